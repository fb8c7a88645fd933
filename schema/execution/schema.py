"""The schema object, and how a request's operation runs through it."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NoReturn, TypeGuard, cast

import strawberry
from graphql import (
    ASTValidationRule,
    DocumentNode,
    ExecutionResult,
    GraphQLError,
    OperationDefinitionNode,
    execute,
    specified_rules,
)
from graphql.validation import NoSchemaIntrospectionCustomRule

from lookalike.resolvers.context import Context
from lookalike.schema.execution.errors import coded, is_expected
from lookalike.schema.execution.executor import planned
from lookalike.schema.execution.resolver_calls import ResolverCalls
from lookalike.schema.execution.strawberry_compat import (
    NameConverter,
    StrawberryConfig,
    describe_enum_values,
    graphql_schema,
    is_awaitable,
    validate_document,
)
from lookalike.schema.limits.access import AccessControl
from lookalike.schema.limits.shape import ShapeLimits
from lookalike.schema.operations.cache import OperationCache
from lookalike.schema.operations.documents import DocumentLimits
from lookalike.schema.types import books, faces
from lookalike.schema.types.books import BookMutation, BookQuery
from lookalike.schema.types.faces import FaceMutation, FaceQuery
from lookalike.services.core.settings import Settings

log = logging.getLogger("lookalike.graphql")
VALIDATION_FAILED = "GRAPHQL_VALIDATION_FAILED"
IsAwaitable = Callable[[Any], TypeGuard[Awaitable[Any]]]


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
    """The types, and ``run``: what happens to an operation between the endpoint, which has
    parsed the document and picked the operation (documents.py), and the resolvers.

    Strawberry's ``execute`` runs a request through its extensions runner: extension objects
    made per request, a context manager per hook and extension, a middleware manager and an
    execution context of its own: a measurable share of a single book query's server time
    (docs/architecture.md; py-spy under bench.books' single load). What extensions would do is
    done here once per document or directly: a caller who may not run the operation is refused
    first (access.py: nothing about fields or costs is given away); a document is validated
    once, with the limit rules (kept per operation, like the executor's costs and plans);
    graphql-core executes it with the planned executor (execution.py); every error leaves with a
    code (errors.py).
    Strawberry's own ``execute`` is refused: it would run without the limits.
    """

    def __init__(
        self,
        *,
        access: AccessControl,
        limits: ShapeLimits,
        rules: Sequence[type[ASTValidationRule]] = (),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.access = access
        self.limits = limits
        self.rules = (*specified_rules, *rules)
        self.validated: OperationCache[list[GraphQLError]] = OperationCache()
        self.graphql = graphql_schema(self)  # the graphql-core schema Strawberry made

    async def run(
        self,
        document: DocumentNode,
        operation: OperationDefinitionNode,
        variables: dict[str, Any],
        context: Context,
    ) -> ExecutionResult:
        refused = self.access.refusal(document, operation.operation, context.caller)
        if refused is not None:
            return ExecutionResult(None, [refused])
        errors = self.validated.get(operation, lambda: self._validate(document))
        if errors:
            self.process_errors(errors)
            return ExecutionResult(None, errors)
        try:
            result = execute(
                self.graphql,
                document,
                context_value=context,
                variable_values=variables,
                operation_name=operation.name.value if operation.name else None,
                executor_class=self.execution_context_class,
                # Strawberry's check (fast for plain values), as its own execute passes it
                is_awaitable=cast("IsAwaitable", is_awaitable),
            )
            if not isinstance(result, ExecutionResult):
                result = await result
        except GraphQLError as error:  # refused as execution began (an argument the cost reads)
            result = ExecutionResult(None, [error])
        except Exception as error:  # a bug outside any resolver: still a coded GraphQL error
            result = ExecutionResult(None, [GraphQLError(str(error), original_error=error)])
        if result.errors:
            self.process_errors(result.errors)
            # what is left uncoded was raised while executing: a variable graphql-core could
            # not coerce is the client's, anything unexpected is a bug
            result.errors = [coded(error, "BAD_USER_INPUT") for error in result.errors]
        return result

    def _validate(self, document: DocumentNode) -> list[GraphQLError]:
        """The shape limits, then Strawberry's validation (graphql-core's rules and its own):
        a document over a limit is refused before validation can work hard on it."""
        refused = self.limits.refusal(document)
        if refused is not None:
            return [refused]
        errors = validate_document(self.graphql, document, self.rules)
        return [coded(error, VALIDATION_FAILED) for error in errors]

    def process_errors(self, errors: list[GraphQLError], execution_context: Any = None) -> None:
        """Log a traceback only for what is a bug; client mistakes are in the request log."""
        for error in errors:
            if not is_expected(error):
                log.error("unexpected error in %s", error.path, exc_info=error.original_error)

    async def execute(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise TypeError("lookalike runs operations with Schema.run (limits, access, codes)")

    def execute_sync(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise TypeError("lookalike runs operations with Schema.run (limits, access, codes)")


describe_enum_values({**books.ENUM_VALUES, **faces.ENUM_VALUES})


@strawberry.type(
    description="Reads: books and their look-alikes (by description embedding, cosine "
    "distance), search, recommendations, and enrolled people. Every error carries "
    "extensions.code (BAD_USER_INPUT, BOOK_NOT_FOUND, PERSON_NOT_FOUND, QUERY_TOO_COMPLEX, ...)."
)
class Query(BookQuery, FaceQuery):
    """The domains' queries as one root type (what strawberry's merge_types does, described)."""


@strawberry.type(
    description="Changes: identifying, verifying and enrolling faces (photos as multipart "
    "uploads), forgetting people, and, for full API keys, adding, replacing and deleting "
    "books. Every error carries extensions.code."
)
class Mutation(FaceMutation, BookMutation):
    """The domains' mutations as one root type, described."""


def build_schema(settings: Settings) -> Schema:
    """The schema with this deployment's limits and access rules.

    Validation is kept per operation, so a document is checked against the limits once
    however often it is sent.
    """
    limits = ShapeLimits(
        max_depth=settings.max_query_depth,
        max_aliases=settings.max_query_aliases,
        max_introspection_depth=settings.max_introspection_depth,
        max_fields=settings.max_query_fields,
        max_selection_fields=settings.max_selection_fields,
    )
    rules: list[type[ASTValidationRule]] = []
    if not settings.introspection:
        rules.append(NoSchemaIntrospectionCustomRule)
    executor = planned(settings.max_query_cost, settings.fast_path)
    schema = Schema(
        query=Query,
        mutation=Mutation,
        access=AccessControl(
            keys_configured=bool(settings.api_keys or settings.identify_keys),
            keys_for_queries=settings.require_key_for_queries,
        ),
        limits=limits,
        rules=rules,
        execution_context_class=executor,
        config=StrawberryConfig(name_converter=RememberedNames()),
    )
    if settings.fast_path:
        executor.calls = ResolverCalls.installed(schema)
    return schema


def document_limits(settings: Settings) -> DocumentLimits:
    return DocumentLimits(settings.max_query_length, settings.max_query_tokens)


def sdl() -> str:
    """The schema in SDL, as ``schema.graphql`` at the repository root keeps it for review.

    Built from the defaults, not the environment: settings change limits, never the types.
    """
    return build_schema(Settings.model_construct()).as_str() + "\n"
