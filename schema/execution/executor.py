"""The executor: it refuses an operation over the cost limit, says what each book field will
show before the first resolver runs, and completes values by plans (``plans``).

graphql-core builds one executor per operation, with the arguments' coerced values; this is
the first point where the real cost is known (a ``$k: Int = 100`` default is 100 here), and
where the operation's document is at hand to work out the book selections (per document).
A plain leaf of an object that is not planned (a field beside a resolver graphql-core runs)
is read here directly, without a ResolveInfo or the resolver call through Strawberry's
wrapper; anything unusual about it goes through graphql-core's own path.

Each operation that falls back to graphql-core's own path counts once per reason
(``plans.Fallback``); each in which plans completed values counts in
``lookalike_graphql_planned_operations``. ``LOOKALIKE_FAST_PATH=false`` runs graphql-core's
own execution for every operation (to compare answers, or to bisect a regression).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from functools import partial
from typing import Any

from graphql import (
    ExecutionResult,
    GraphQLObjectType,
    GraphQLOutputType,
    OperationType,
    UndefinedType,
)

from lookalike.schema.execution.graphql_compat import AwaitableOrValue, Path
from lookalike.schema.execution.plans import (
    NO_RUN,
    Fallback,
    NotPlain,
    OperationPlans,
    PlainFields,
    Planner,
    fell_back,
    plain_fields,
)
from lookalike.schema.execution.resolver_calls import ResolverCalls
from lookalike.schema.execution.strawberry_compat import ExecutionContext
from lookalike.schema.limits.budget import rate_limited
from lookalike.schema.limits.cost import OperationCosts
from lookalike.schema.limits.shape import too_complex
from lookalike.schema.operations.selections import book_selections
from lookalike.services.core.metrics import PLANNED_OPERATIONS
from lookalike.services.limits.budget import ClientBudget


class PlannedExecutor(ExecutionContext):
    # per schema (``planned``): the cost limit, what is kept per operation, and how the
    # schema's resolvers are called (None: through Strawberry's wrapper); fast_path False:
    # graphql-core's own execution for everything
    max_cost: int
    costs: OperationCosts
    plans: OperationPlans
    fast_path: bool = True
    calls: ResolverCalls | None = None
    # set as the operation starts; None: graphql-core's own path (resolve middleware)
    plain: PlainFields | None = None
    planner: Planner | None = None
    # what the operation has counted: plans ran, the reasons it fell back
    counted_planned: bool = False
    fallbacks: frozenset[Fallback] = frozenset()

    def execute_operation(self, serially: bool | None = None) -> AwaitableOrValue[ExecutionResult]:
        root = self.schema.get_root_type(self.operation.operation)
        if root is not None:
            fragments = {name: f.definition for name, f in self.fragments.items()}
            # the catalogue's size prices radius searches (none: a schema without books)
            catalogue = getattr(self.context_value, "catalogue", None)
            books = catalogue.books if catalogue is not None else 0
            cost = self.costs.cost(self.operation, root, fragments, self.variable_values, books)
            budget: ClientBudget | None = getattr(self.context_value, "budget", None)
            max_cost = self.max_cost
            if budget is not None:  # more than a whole minute's budget would never run
                max_cost = min(max_cost, budget.item.amount)
            if cost > max_cost:
                error = too_complex(
                    f"the query could cost {cost:,} (items returned, searches, model "
                    f"runs); the limit is {max_cost:,}",
                    self.operation,
                    cost=cost,
                    maxCost=max_cost,
                )
                return ExecutionResult(data=None, errors=[error])
            if budget is not None:
                return self.charged(budget, cost, serially)
        return self.started(serially)

    async def charged(
        self, budget: ClientBudget, cost: int, serially: bool | None
    ) -> ExecutionResult:
        """The operation run once the client's budget took its cost; nothing run if not."""
        spent = await budget.spend(cost)
        if not spent.charged:
            return ExecutionResult(data=None, errors=[rate_limited(spent, cost, self.operation)])
        result = self.started(serially)
        return await result if self.is_awaitable(result) else result  # type: ignore[return-value]

    def started(self, serially: bool | None) -> AwaitableOrValue[ExecutionResult]:
        """The operation run, its cost allowed."""
        fragments = {name: f.definition for name, f in self.fragments.items()}
        root = self.schema.get_root_type(self.operation.operation)
        if root is not None and hasattr(self.context_value, "book_selections"):
            selections = book_selections(
                self.schema, self.operation, fragments, self.variable_values
            )
            self.context_value.book_selections = selections
        if not self.fast_path:
            return super().execute_operation(serially)  # type: ignore[return-value]
        manager = self.middleware_manager
        query = self.operation.operation is OperationType.QUERY  # resolvers read only
        if manager is None or not manager.middlewares:  # middleware sees every field
            self.plain = plain_fields(self.schema)
            if query:
                self.planner = self.plans.planner(self, self.plain, fragments, self.calls)
        elif query:
            self.fell_back(Fallback.MIDDLEWARE)
        return super().execute_operation(serially)  # type: ignore[return-value]

    def fell_back(self, reason: Fallback, error: BaseException | None = None) -> None:
        """Count this operation once for each reason it falls back to graphql-core's path."""
        if reason not in self.fallbacks:
            self.fallbacks = self.fallbacks | {reason}
            fell_back(reason, error)

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
            except NotPlain:  # graphql-core's own path will report it
                self.fell_back(Fallback.LEAF)
            except Exception as error:
                self.fell_back(Fallback.ERROR, error)
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
            except Exception as error:  # graphql-core's own path will complete and report it
                self.planner = None  # for the rest of this request: see settled
                done = self.failed(error)
            if isinstance(done, Fallback):
                self.fell_back(done)
            else:
                if not self.counted_planned:
                    self.counted_planned = True
                    PLANNED_OPERATIONS.inc()
                if isinstance(done, Coroutine):  # resolvers below: a level at a time
                    own = partial(
                        super().complete_value,
                        return_type, field_details_list, info, path, result, position_context,
                    )  # fmt: skip
                    return self.settled(done, own)
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
        except Exception as error:  # reported by graphql-core's completion, without this context
            self.planner = None
            self.failed(error)
        completed = own()  # graphql-core's completion of the same value
        return await completed if self.is_awaitable(completed) else completed

    def failed(self, error: Exception) -> Fallback:
        """Count a plan's failure by its reason (an unexpected one is logged with its
        traceback), and return the reason."""
        reason = error.reason if isinstance(error, NotPlain) else Fallback.ERROR
        self.fell_back(reason, error)
        return reason


def planned(max_cost: int, fast_path: bool = True) -> type[PlannedExecutor]:
    """The executor class of one schema: its cost limit, its own caches. Set its ``calls``
    (``ResolverCalls.installed(schema)``) once the schema is made, for the plans to call the
    schema's resolvers directly. ``fast_path`` False: graphql-core's execution alone."""
    return type(
        "PlannedExecutor",
        (PlannedExecutor,),
        {
            "max_cost": max_cost,
            "fast_path": fast_path,
            "costs": OperationCosts(),
            "plans": OperationPlans(),
        },
    )
