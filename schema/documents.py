"""GraphQL documents: parsed once per distinct text, and the one operation a request runs.

The HTTP endpoint parses a document before it executes anything (a document that does not
parse is a 400, a GET of a mutation a 405, an ambiguous operation a 422 under the
GraphQL-over-HTTP spec), and Strawberry's parsing step reads the same cache, so a document is
parsed once however often it is sent.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache

from graphql import DocumentNode, GraphQLError, OperationDefinitionNode, parse
from strawberry.extensions import SchemaExtension

TOKENS_EXCEEDED = "Document contains more than"  # graphql-core's error for max_tokens
CACHED_TEXT = 32 * 1024  # longer documents are parsed each time: the cache stays small


@lru_cache(maxsize=1024)
def _parse_cached(query: str, max_tokens: int) -> DocumentNode:
    return parse(query, max_tokens=max_tokens)


def parse_document(query: str, max_tokens: int) -> DocumentNode:
    """The parsed document, or a GraphQLError with its code (GRAPHQL_PARSE_FAILED, or
    QUERY_TOO_COMPLEX when the parser stopped at the token limit)."""
    try:
        if len(query) <= CACHED_TEXT:
            return _parse_cached(query, max_tokens)
        return parse(query, max_tokens=max_tokens)
    except GraphQLError as error:
        if TOKENS_EXCEEDED in error.message:
            raise GraphQLError(
                f"the document has more than {max_tokens:,} tokens; the limit is {max_tokens:,}",
                extensions={"code": "QUERY_TOO_COMPLEX", "maxTokens": max_tokens},
            ) from None
        raise GraphQLError(
            error.message,
            source=error.source,
            positions=error.positions,
            extensions={"code": "GRAPHQL_PARSE_FAILED"},
        ) from None


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


class CachedParsing(SchemaExtension):
    """Strawberry's parsing step, served from the same cache as the endpoint's check."""

    def __init__(self, *, max_tokens: int) -> None:
        self.max_tokens = max_tokens

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        if context.query is not None:
            context.graphql_document = parse_document(context.query, self.max_tokens)
        yield
