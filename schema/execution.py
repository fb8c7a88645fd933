"""The executor: it refuses an operation over the cost limit and says what each book field
will show, before the first resolver runs.

graphql-core builds one executor per operation, with the arguments' coerced values; this is
the first point where the real cost is known (a ``$k: Int = 100`` default is 100 here), and
where the operation's document is at hand to work out the book selections (per document).
"""

from __future__ import annotations

from graphql.execution import ExecutionResult
from graphql.pyutils import AwaitableOrValue
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from lookalike.schema.cost import operation_cost
from lookalike.schema.limits import too_complex
from lookalike.schema.selections import book_selections


def planned(max_cost: int) -> type[StrawberryGraphQLCoreExecutionContext]:
    class PlannedExecutor(StrawberryGraphQLCoreExecutionContext):
        def execute_operation(
            self, serially: bool | None = None
        ) -> AwaitableOrValue[ExecutionResult]:
            root = self.schema.get_root_type(self.operation.operation)
            if root is not None:
                fragments = {name: f.definition for name, f in self.fragments.items()}
                cost = operation_cost(self.operation, root, fragments, self.variable_values)
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
            return super().execute_operation(serially)  # type: ignore[return-value]

    return PlannedExecutor
