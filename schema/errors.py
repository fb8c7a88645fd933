"""Every GraphQL error leaves with an ``extensions.code``, and nothing internal leaks.

Domain errors carry their own code; Redis being unreachable is SERVICE_UNAVAILABLE wherever it
surfaces; a document that does not parse or validate gets Apollo's GRAPHQL_PARSE_FAILED /
GRAPHQL_VALIDATION_FAILED; a variable of the wrong type is BAD_USER_INPUT; anything else is a
bug, logged with its traceback and answered as INTERNAL_SERVER_ERROR with a generic message.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from graphql import GraphQLError
from strawberry.extensions import SchemaExtension

from lookalike.schema.limits import token_limit_error
from lookalike.services.errors import LookalikeError
from lookalike.services.redis_connection import UNREACHABLE

log = logging.getLogger("lookalike.graphql")


def is_expected(error: GraphQLError) -> bool:
    """Errors the client caused or Redis's absence explains: not worth a traceback."""
    original = error.original_error
    return original is None or isinstance(original, (LookalikeError, GraphQLError, *UNREACHABLE))


def _with_code(
    error: GraphQLError, code: str, message: str | None = None, **extra: Any
) -> GraphQLError:
    extensions = {**(error.extensions or {}), **extra, "code": code}
    return GraphQLError(
        message if message is not None else error.message,
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
        original_error=error.original_error,
        extensions=extensions,
    )


def coded(error: GraphQLError, phase_code: str) -> GraphQLError:
    if (error.extensions or {}).get("code"):
        return error
    original = error.original_error
    if isinstance(original, LookalikeError):
        return _with_code(error, original.code, original.message, **original.extensions)
    if isinstance(original, UNREACHABLE):
        return _with_code(error, "SERVICE_UNAVAILABLE", "Redis is unreachable; try again shortly")
    if original is None:
        return _with_code(error, phase_code)
    if isinstance(original, GraphQLError):  # graphql-core refusing a variable's value
        return _with_code(error, "BAD_USER_INPUT")
    return _with_code(error, "INTERNAL_SERVER_ERROR", "Internal server error")


class ErrorCodes(SchemaExtension):
    def __init__(self, *, max_tokens: int) -> None:
        self.max_tokens = max_tokens

    def on_operation(self) -> Iterator[None]:
        yield
        context = self.execution_context
        result = context.result
        if result is None or not result.errors:
            return
        if context.graphql_document is None:
            phase = "GRAPHQL_PARSE_FAILED"
            result.errors = [
                token_limit_error(error, self.max_tokens) or error for error in result.errors
            ]
        elif context.pre_execution_errors is result.errors and result.data is None:
            phase = "GRAPHQL_VALIDATION_FAILED"
        else:
            phase = "BAD_USER_INPUT"  # coercing a variable failed while executing
        result.errors = [coded(error, phase) for error in result.errors]
