"""GraphQL documents: parsed once per distinct text, and the one operation a request runs.

The HTTP endpoint parses a document before it executes anything (a document that does not
parse is a 400, a GET of a mutation a 405, an ambiguous operation a 422 under the
GraphQL-over-HTTP spec) and runs the very document and operation it found (``Schema.run``),
so a document is parsed once however often it is sent, and the work kept per operation
(validation, costs, plans) finds the same operation object again.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from graphql import (
    DocumentNode,
    FloatValueNode,
    GraphQLError,
    IntValueNode,
    OperationDefinitionNode,
    Visitor,
    parse,
    visit,
)

TOKENS_EXCEEDED = "Document contains more than"  # graphql-core's error for max_tokens
MAX_NUMBER_DIGITS = 100  # Python refuses to read integers of over 4,300 digits
# The cache is bounded by entries and by the text it holds: a parsed document's nodes take
# far more memory than its text (docs/decisions.md, Limits), and the text budget bounds them.
CACHE_ENTRIES = 512
CACHE_TEXT = 512 * 1024


@dataclass(frozen=True, slots=True)
class DocumentLimits:
    max_length: int
    max_tokens: int


class _DocumentCache:
    def __init__(self) -> None:
        self.documents: OrderedDict[tuple[str, DocumentLimits], DocumentNode] = OrderedDict()
        self.text = 0

    def get(self, key: tuple[str, DocumentLimits]) -> DocumentNode | None:
        document = self.documents.get(key)
        if document is not None:
            self.documents.move_to_end(key)
        return document

    def put(self, key: tuple[str, DocumentLimits], document: DocumentNode) -> None:
        self.documents[key] = document
        self.text += len(key[0])
        while len(self.documents) > CACHE_ENTRIES or self.text > CACHE_TEXT:
            (old, _), _ = self.documents.popitem(last=False)
            self.text -= len(old)


_cache = _DocumentCache()


def parse_document(query: str, limits: DocumentLimits) -> DocumentNode:
    """The parsed document, or a GraphQLError with its code: GRAPHQL_PARSE_FAILED, or
    QUERY_TOO_COMPLEX for a document over the length or token limit (the parser stops at
    the token limit; comments and long strings are not tokens, so the length has its own)."""
    key = (query, limits)
    document = _cache.get(key)
    if document is not None:
        return document
    if len(query) > limits.max_length:
        raise GraphQLError(
            f"the document has {len(query):,} characters; the limit is {limits.max_length:,}",
            extensions={"code": "QUERY_TOO_COMPLEX", "maxLength": limits.max_length},
        )
    try:
        document = parse(query, max_tokens=limits.max_tokens)
    except GraphQLError as error:
        if TOKENS_EXCEEDED in error.message:
            raise GraphQLError(
                f"the document has more than {limits.max_tokens:,} tokens; the limit is "
                f"{limits.max_tokens:,}",
                extensions={"code": "QUERY_TOO_COMPLEX", "maxTokens": limits.max_tokens},
            ) from None
        raise GraphQLError(
            error.message,
            source=error.source,
            positions=error.positions,
            extensions={"code": "GRAPHQL_PARSE_FAILED"},
        ) from None
    visit(document, _Numbers())
    _cache.put(key, document)
    return document


class _Numbers(Visitor):
    """Number literals of sensible length: graphql-core would turn a 5,000-digit Int into a
    ValueError inside validation (a 500), and no argument takes such a number."""

    def enter_int_value(self, node: IntValueNode, *_: object) -> None:
        self._check(node)

    def enter_float_value(self, node: FloatValueNode, *_: object) -> None:
        self._check(node)

    @staticmethod
    def _check(node: IntValueNode | FloatValueNode) -> None:
        if len(node.value) > MAX_NUMBER_DIGITS:
            raise GraphQLError(
                f"a number literal of {len(node.value):,} characters; at most {MAX_NUMBER_DIGITS}",
                nodes=node,
                extensions={"code": "GRAPHQL_VALIDATION_FAILED"},
            )


def select_operation(document: DocumentNode, name: str | None) -> OperationDefinitionNode:
    """The operation to run, as the GraphQL spec's GetOperation() picks it: by name, or the
    only one. Several operations and no name is an error, never "the first one"."""
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if name is None:
        if len(operations) == 1:
            return operations[0]
        problem = (
            "the document has no operation"
            if not operations
            else f"the document has {len(operations)} operations: send operationName to choose one"
        )
    else:
        for operation in operations:
            if operation.name is not None and operation.name.value == name:
                return operation
        problem = f"the document has no operation named {name[:64]!r}"
    raise GraphQLError(problem, extensions={"code": "OPERATION_RESOLUTION_FAILURE"})
