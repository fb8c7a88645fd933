"""The schema object: types plus the extensions every operation runs through."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry import extensions as strawberry_extensions
from strawberry.extensions import DisableIntrospection, ValidationCache
from strawberry.tools import merge_types
from strawberry.types import ExecutionContext

from lookalike.schema.access import AccessControl
from lookalike.schema.books import BookQuery
from lookalike.schema.errors import ErrorCodes, is_expected
from lookalike.schema.faces import FaceQuery, Mutation
from lookalike.schema.limits import QueryLimits
from lookalike.schema.observability import OperationName
from lookalike.services.settings import Settings

log = logging.getLogger("lookalike.graphql")


class ParserCache(strawberry_extensions.ParserCache):
    """Strawberry's parser cache, except that a document that does not parse is left to
    Strawberry to parse again inside the operation, where the error gets its code."""

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        try:
            context.graphql_document = self.cached_parse_document(
                context.query, **context.parse_options
            )
        except GraphQLError:
            context.graphql_document = None
        yield


class Schema(strawberry.Schema):
    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        """Log a traceback only for what is a bug; client mistakes are in the request log."""
        for error in errors:
            if not is_expected(error):
                log.error("unexpected error in %s", error.path, exc_info=error.original_error)


Query = merge_types("Query", (BookQuery, FaceQuery))


def build_schema(settings: Settings) -> Schema:
    """The schema with this deployment's limits.

    Clients send the same few documents over and over: parse and validate each once (the LRU
    caches live at module level, so a fresh extension per request still shares them). Access
    is checked before the limits, so a refused caller learns nothing about costs.
    """
    extensions: list[Any] = [
        lambda: ParserCache(maxsize=1024),
        lambda: ValidationCache(maxsize=1024),
        lambda: AccessControl(
            keys_configured=bool(settings.api_keys or settings.identify_keys),
            keys_for_queries=settings.require_key_for_queries,
        ),
        lambda: QueryLimits(
            max_cost=settings.max_query_cost,
            max_depth=settings.max_query_depth,
            max_aliases=settings.max_query_aliases,
            max_tokens=settings.max_query_tokens,
        ),
        lambda: ErrorCodes(max_tokens=settings.max_query_tokens),
        OperationName,
    ]
    if not settings.introspection:
        extensions.insert(0, DisableIntrospection)
    return Schema(query=Query, mutation=Mutation, extensions=extensions)


def sdl() -> str:
    """The schema in SDL, as ``schema.graphql`` at the repository root keeps it for review.

    Built from the defaults, not the environment: settings change limits, never the types.
    """
    return build_schema(Settings.model_construct()).as_str() + "\n"
