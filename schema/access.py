"""Who may run what: API keys for changes, and for queries when the deployment says so.

With ``LOOKALIKE_API_KEYS`` set, a mutation needs ``Authorization: Bearer <key>``: no key is
UNAUTHENTICATED, a key that is not one of them is FORBIDDEN. With no keys configured,
mutations are accepted only from a loopback address: a laptop works out of the box, a server
on the network never silently accepts changes (face enrolment is biometric data). Behind a
reverse proxy on the same host, uvicorn takes the address from X-Forwarded-For; a proxy that
does not send it makes every client look local: set keys there.
"""

from __future__ import annotations

from collections.abc import Iterator

from graphql import GraphQLError
from strawberry.extensions import SchemaExtension
from strawberry.types.graphql import OperationType

from lookalike.services.api_keys import Caller


class AccessControl(SchemaExtension):
    """Refuse an operation before it runs (so it changes nothing) when the caller may not."""

    def __init__(self, *, keys_configured: bool, keys_for_queries: bool) -> None:
        self.keys_configured = keys_configured
        self.keys_for_queries = keys_for_queries

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        caller: Caller | None = getattr(context.context, "caller", None)
        if context.graphql_document is not None and caller is not None:
            try:
                operation = context.operation_type
            except RuntimeError:  # no such operation: validation will say so
                operation = None
            error = self._refusal(operation, caller)
            if error is not None:
                context.pre_execution_errors = [error]
        yield

    def _refusal(self, operation: OperationType | None, caller: Caller) -> GraphQLError | None:
        guarded = operation == OperationType.MUTATION or (
            operation is not None and self.keys_for_queries
        )
        if not guarded or caller.key == "valid":
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


def _error(message: str, code: str) -> GraphQLError:
    return GraphQLError(message, extensions={"code": code})
