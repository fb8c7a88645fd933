"""Who may run what: API keys for changes, and for queries when the deployment says so.

With ``LOOKALIKE_API_KEYS`` set, a mutation needs ``Authorization: Bearer <key>``: no key is
UNAUTHENTICATED, a key that is not one of them is FORBIDDEN. A key of
``LOOKALIKE_IDENTIFY_KEYS`` may run queries and the mutations ``identifyFace``, ``identifyFaces``
and ``verifyFace``, nothing else: a document that selects any other mutation field anywhere
(directly, under an alias, through fragments, under @skip, in any of its operations, whichever
one the request names) is FORBIDDEN as a whole, before anything runs. With no keys
configured, mutations are accepted only from a loopback address: a laptop works out of the
box, a server on the network never silently accepts changes (face enrolment is biometric
data). Behind a reverse proxy on the same host, uvicorn takes the address from
X-Forwarded-For; a proxy that does not send it makes every client look local: set keys there.
"""

from __future__ import annotations

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
)

from lookalike.services.core.api_keys import Caller

# What a key of LOOKALIKE_IDENTIFY_KEYS may change: nothing; these three only read.
IDENTIFY_ONLY_MUTATIONS = frozenset({"identifyFace", "identifyFaces", "verifyFace", "__typename"})


class AccessControl:
    """Refuse an operation before it runs (so it changes nothing) when the caller may not:
    before validation, so a refused caller learns nothing about fields or costs."""

    def __init__(self, *, keys_configured: bool, keys_for_queries: bool) -> None:
        self.keys_configured = keys_configured
        self.keys_for_queries = keys_for_queries

    def refusal(
        self, document: DocumentNode, operation: OperationType, caller: Caller
    ) -> GraphQLError | None:
        error = self._refusal(operation, caller)
        if error is None and caller.key == "identify":
            error = _identify_only(document)
        return error

    def _refusal(self, operation: OperationType, caller: Caller) -> GraphQLError | None:
        guarded = operation == OperationType.MUTATION or self.keys_for_queries
        if not guarded or caller.key in ("valid", "identify"):
            return None
        what = "changes" if operation == OperationType.MUTATION else "queries"
        if not self.keys_configured:
            if caller.loopback:
                return None
            return _error(
                f"{what} are accepted only from this machine until API keys are configured "
                "(LOOKALIKE_API_KEYS)",
                "FORBIDDEN",
            )
        if caller.key == "missing":
            message = f"{what} need an API key: send 'Authorization: Bearer <key>'"
            return _error(message, "UNAUTHENTICATED")
        return _error("the API key is not valid", "FORBIDDEN")


def _identify_only(document: DocumentNode) -> GraphQLError | None:
    """FORBIDDEN when any mutation in the document selects a field an identify key may not use.

    Read from the document before validation, so it must not trust it. Every operation
    counts, not only the one the request names: which one runs is decided later, by code
    this check would have to agree with. Fragments are followed once each (a cycle cannot
    loop), and a field under @skip counts as selected.
    """
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    operations = [
        d
        for d in document.definitions
        if isinstance(d, OperationDefinitionNode) and d.operation == OperationType.MUTATION
    ]
    for operation in operations:
        refused = sorted(_root_fields(operation.selection_set, fragments) - IDENTIFY_ONLY_MUTATIONS)
        if refused:
            return _error(
                f"this API key may only identify and verify faces, not run {refused[0]}",
                "FORBIDDEN",
            )
    return None


def _root_fields(
    selections: SelectionSetNode, fragments: dict[str, FragmentDefinitionNode]
) -> set[str]:
    names: set[str] = set()
    seen: set[str] = set()
    pending = [selections]
    while pending:
        for selection in pending.pop().selections:
            if isinstance(selection, FieldNode):
                names.add(selection.name.value)  # the field, whatever alias it is given
            elif isinstance(selection, InlineFragmentNode):
                pending.append(selection.selection_set)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                if name not in seen:
                    seen.add(name)
                    if name in fragments:
                        pending.append(fragments[name].selection_set)
    return names


def _error(message: str, code: str) -> GraphQLError:
    return GraphQLError(message, extensions={"code": code})
