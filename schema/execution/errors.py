"""Every GraphQL error leaves with an ``extensions.code``, and nothing internal leaks.

Domain errors carry their own code; Redis being unreachable, busy (no connection came free) or
full (a write refused at maxmemory) is SERVICE_UNAVAILABLE wherever it surfaces; a document that
does not validate is GRAPHQL_VALIDATION_FAILED (coded in the validation step itself, where it is
known to be one); a variable that does not coerce is BAD_USER_INPUT; anything else is a bug,
logged with its traceback and answered as INTERNAL_SERVER_ERROR with a generic message.

What goes back is bounded: a message quotes at most a short prefix of any input (a 0.9 MB id
must not come back 0.9 MB long), and with introspection switched off no message suggests
field or argument names ("Did you mean 'title'?" would give the schema away).
"""

from __future__ import annotations

import re
from typing import Any

from graphql import GraphQLError
from redis.exceptions import OutOfMemoryError

from lookalike.services.core.errors import LookalikeError
from lookalike.services.redis.connection import UNREACHABLE
from lookalike.services.redis.round_trips import NoConnectionFree

MAX_MESSAGE = 300
MAX_EXTENSION_TEXT = 80
_SUGGESTION = re.compile(r"\s*Did you mean [^?]*\?", re.DOTALL)


def is_expected(error: GraphQLError) -> bool:
    """Errors the client caused or Redis's absence explains: not worth a traceback."""
    original = error.original_error
    return original is None or isinstance(
        original, (LookalikeError, GraphQLError, OutOfMemoryError, *UNREACHABLE)
    )


def with_code(
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


def coded(error: GraphQLError, default: str) -> GraphQLError:
    """The error with its code: its own, its cause's, or ``default`` for a request error."""
    if (error.extensions or {}).get("code"):
        return error
    original = error.original_error
    if isinstance(original, LookalikeError):
        return with_code(error, original.code, original.message, **original.extensions)
    if isinstance(original, NoConnectionFree):
        return with_code(error, "SERVICE_UNAVAILABLE", str(original))
    if isinstance(original, UNREACHABLE):
        return with_code(error, "SERVICE_UNAVAILABLE", "Redis is unreachable; try again shortly")
    if isinstance(original, OutOfMemoryError):  # a write outside redis_errors: uncounted
        return with_code(error, "SERVICE_UNAVAILABLE", "Redis refuses writes: maxmemory reached")
    if original is None or isinstance(original, GraphQLError):
        return with_code(error, default)
    return with_code(error, "INTERNAL_SERVER_ERROR", "Internal server error")


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def public(error: GraphQLError, *, hide_suggestions: bool) -> dict[str, Any]:
    """The error as the response carries it: bounded, and without suggestions when asked."""
    formatted: dict[str, Any] = dict(error.formatted)
    message = error.message
    if hide_suggestions:
        message = _SUGGESTION.sub("", message)
    formatted["message"] = _shorten(message, MAX_MESSAGE)
    extensions = formatted.get("extensions") or {}
    formatted["extensions"] = {
        key: _shorten(value, MAX_EXTENSION_TEXT) if isinstance(value, str) else value
        for key, value in extensions.items()
    }
    return formatted


def code_of(error: GraphQLError) -> str:
    return str((error.extensions or {}).get("code", "INTERNAL_SERVER_ERROR"))
