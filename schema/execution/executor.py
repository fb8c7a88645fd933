"""The executor: it refuses an operation over the cost limit, says what each book field will
show before the first resolver runs, and completes values by plans (``plans``).

graphql-core builds one executor per operation, with the arguments' coerced values; this is
the first point where the real cost is known (a ``$k: Int = 100`` default is 100 here), and
where the operation's document is at hand to work out the book selections (per document).
A plain leaf of an object that is not planned (a field beside a resolver graphql-core runs)
is read here directly, without a ResolveInfo or the resolver call through Strawberry's
wrapper; anything unusual about it goes through graphql-core's own path.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from functools import partial
from typing import Any

from graphql import GraphQLObjectType, GraphQLOutputType, OperationType
from graphql.execution import ExecutionResult
from graphql.pyutils import AwaitableOrValue, Path, UndefinedType
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from lookalike.schema.execution.plans import (
    NO_RUN,
    UNPLANNED,
    OperationPlans,
    PlainFields,
    Planner,
    plain_fields,
)
from lookalike.schema.execution.resolver_calls import ResolverCalls
from lookalike.schema.limits.cost import OperationCosts
from lookalike.schema.limits.shape import too_complex
from lookalike.schema.operations.selections import book_selections


class PlannedExecutor(StrawberryGraphQLCoreExecutionContext):
    # per schema (``planned``): the cost limit, what is kept per operation, and how the
    # schema's resolvers are called (None: through Strawberry's wrapper)
    max_cost: int
    costs: OperationCosts
    plans: OperationPlans
    calls: ResolverCalls | None = None
    # set as the operation starts; None: graphql-core's own path (resolve middleware)
    plain: PlainFields | None = None
    planner: Planner | None = None

    def execute_operation(self, serially: bool | None = None) -> AwaitableOrValue[ExecutionResult]:
        root = self.schema.get_root_type(self.operation.operation)
        fragments = {name: f.definition for name, f in self.fragments.items()}
        if root is not None:
            cost = self.costs.cost(self.operation, root, fragments, self.variable_values)
            max_cost = self.max_cost
            if cost > max_cost:
                error = too_complex(
                    f"the query could cost {cost:,} (items returned, searches, model "
                    f"runs); the limit is {max_cost:,}",
                    self.operation,
                    cost=cost,
                    maxCost=max_cost,
                )
                return ExecutionResult(data=None, errors=[error])
            if hasattr(self.context_value, "book_selections"):
                selections = book_selections(self.schema, self.operation, fragments)
                self.context_value.book_selections = selections
        manager = self.middleware_manager
        if manager is None or not manager.middlewares:  # middleware sees every field
            self.plain = plain_fields(self.schema)
            if self.operation.operation is OperationType.QUERY:  # resolvers read only
                self.planner = self.plans.planner(self, self.plain, fragments, self.calls)
        return super().execute_operation(serially)  # type: ignore[return-value]

    def execute_field(
        self,
        parent_type: GraphQLObjectType,
        source: Any,
        field_details_list: Any,
        path: Path,
        position_context: Any,
    ) -> AwaitableOrValue[Any] | UndefinedType:
        plain = self.plain
        name = field_details_list[0].node.name.value
        leaf = plain.leaves.get((parent_type.name, name)) if plain is not None else None
        if leaf is not None:
            try:  # the leaf's plan: None, awaitables and refused values raise
                return leaf.complete(leaf.read(source, leaf.attribute), None, NO_RUN)
            except Exception:  # graphql-core's own path will report it
                pass
        return super().execute_field(
            parent_type, source, field_details_list, path, position_context
        )

    def complete_value(
        self,
        return_type: GraphQLOutputType,
        field_details_list: Any,
        info: Any,
        path: Path,
        result: Any,
        position_context: Any,
    ) -> AwaitableOrValue[Any]:
        if self.planner is not None and not isinstance(result, Exception):
            try:
                done = self.planner.complete(return_type, field_details_list, path, result)
            except Exception:  # graphql-core's own path will complete and report it
                self.planner = None  # for the rest of this request: see settled
                done = UNPLANNED
            if isinstance(done, Coroutine):  # resolvers below: a level at a time
                own = partial(
                    super().complete_value,
                    return_type, field_details_list, info, path, result, position_context,
                )  # fmt: skip
                return self.settled(done, own)
            if done is not UNPLANNED:
                return done
        return super().complete_value(
            return_type, field_details_list, info, path, result, position_context
        )

    async def settled(
        self,
        settling: Coroutine[Any, Any, Any],
        own: Callable[[], AwaitableOrValue[Any]],
    ) -> Any:
        """The planned value, or graphql-core's completion of it when something below
        went wrong (its resolvers answer from the loaders' caches). After a failure the
        rest of the request is graphql-core's: its completion of the value calls
        complete_value again for every level and item below, which would otherwise plan
        (and fail) again at each."""
        try:
            return await settling
        except Exception:  # reported by graphql-core's completion, without this context
            self.planner = None
        completed = own()  # graphql-core's completion of the same value
        return await completed if self.is_awaitable(completed) else completed


def planned(max_cost: int) -> type[PlannedExecutor]:
    """The executor class of one schema: its cost limit, its own caches. Set its ``calls``
    (``ResolverCalls.installed(schema)``) once the schema is made, for the plans to call the
    schema's resolvers directly."""
    return type(
        "PlannedExecutor",
        (PlannedExecutor,),
        {"max_cost": max_cost, "costs": OperationCosts(), "plans": OperationPlans()},
    )
