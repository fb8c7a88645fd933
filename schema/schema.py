"""The schema object: types plus the extensions every operation runs through."""

from __future__ import annotations

import logging
from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.extensions import AddValidationRules, DisableIntrospection, ValidationCache
from strawberry.schema.config import StrawberryConfig
from strawberry.schema.name_converter import NameConverter
from strawberry.tools import merge_types
from strawberry.types import ExecutionContext

from lookalike.schema.access import AccessControl
from lookalike.schema.books import BookQuery
from lookalike.schema.documents import CachedParsing, DocumentLimits
from lookalike.schema.errors import ErrorCodes, is_expected
from lookalike.schema.execution import planned
from lookalike.schema.faces import FaceQuery, Mutation
from lookalike.schema.limits import limit_rules
from lookalike.services.settings import Settings

log = logging.getLogger("lookalike.graphql")


class RememberedNames(NameConverter):
    """Strawberry turns each argument's Python name into its GraphQL name at every resolver
    call (60,000 times in the benchmark's nested query); the names never change."""

    def __init__(self) -> None:
        super().__init__()
        self.known: dict[str, str] = {}

    def apply_naming_config(self, name: str) -> str:
        found = self.known.get(name)
        if found is None:
            found = self.known[name] = super().apply_naming_config(name)
        return found


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

    Clients send the same few documents over and over: each is parsed and validated once
    (documents.py and Strawberry's ValidationCache keep them; the limit rules are made here,
    once, so the cache recognises them), and the cost is checked as execution begins.
    AccessControl must come after ValidationCache: both set the validation step's errors, and
    a refused caller must stay refused (and learn nothing about costs or fields).
    """
    rules = limit_rules(
        max_depth=settings.max_query_depth,
        max_aliases=settings.max_query_aliases,
        max_introspection_depth=settings.max_introspection_depth,
    )
    extensions: list[Any] = [
        lambda: CachedParsing(document_limits(settings)),
        lambda: AddValidationRules(list(rules)),
        # bounded like the parse cache: it keeps the documents it has seen alive
        lambda: ValidationCache(maxsize=128),
        lambda: AccessControl(
            keys_configured=bool(settings.api_keys or settings.identify_keys),
            keys_for_queries=settings.require_key_for_queries,
        ),
        ErrorCodes,
    ]
    if not settings.introspection:
        extensions.insert(0, DisableIntrospection)
    return Schema(
        query=Query,
        mutation=Mutation,
        extensions=extensions,
        execution_context_class=planned(settings.max_query_cost),
        config=StrawberryConfig(name_converter=RememberedNames()),
    )


def document_limits(settings: Settings) -> DocumentLimits:
    return DocumentLimits(settings.max_query_length, settings.max_query_tokens)


def sdl() -> str:
    """The schema in SDL, as ``schema.graphql`` at the repository root keeps it for review.

    Built from the defaults, not the environment: settings change limits, never the types.
    """
    return build_schema(Settings.model_construct()).as_str() + "\n"
