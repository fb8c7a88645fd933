"""The executor: it refuses an operation over the cost limit, says what each book field will
show before the first resolver runs, and completes plain values without graphql-core's
per-field machinery.

graphql-core builds one executor per operation, with the arguments' coerced values; this is
the first point where the real cost is known (a ``$k: Int = 100`` default is 100 here), and
where the operation's document is at hand to work out the book selections (per document).

Most of a nested answer is plain data: a list of matches, each a distance and a book with its
title (the benchmark's 20 x 5 x 5 query has 1,982 fields, 1,500 of them in the innermost
lists). graphql-core spends on each field what it spends on a field with a resolver (a
ResolveInfo, a path, the resolver call through Strawberry's wrapper, awaitable checks, the
completion). A field is plain when Strawberry itself would serve it by reading an attribute
("basic": no resolver, no field extension) and it takes no arguments; a selection of only
plain fields (leaves, objects and lists of them, ``__typename``) is completed here by a plan
made once per place in the query (``Plans``): reads, the scalars' own output coercion, dicts.
A plain leaf of any other object is read the same way. Anything unusual about a value (a
failed read, a null in a non-null field, a value the scalar refuses, something that is not a
list) sends that value through graphql-core's own path, which reports it exactly as before;
so do resolve middleware, abstract types and types with an ``is_type_of`` check.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from weakref import WeakKeyDictionary

from graphql import (
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLSchema,
    get_nullable_type,
    is_leaf_type,
    is_list_type,
    is_non_null_type,
    is_object_type,
)
from graphql.execution import ExecutionResult
from graphql.pyutils import AwaitableOrValue, Path, Undefined, UndefinedType
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.schema.schema_converter import GraphQLCoreConverter
from strawberry.types.field import StrawberryField

from lookalike.schema.cost import OperationCosts
from lookalike.schema.limits import too_complex
from lookalike.schema.selections import book_selections

Plan = Callable[[Any], Any]  # a resolved value -> its completed answer, or NotPlain


class NotPlain(Exception):
    """This value needs graphql-core's own completion (which will report what is wrong)."""


@dataclass(frozen=True, slots=True)
class PlainField:
    """A field Strawberry answers by reading an attribute of its parent."""

    attribute: str
    read: Callable[[Any, str], Any]  # Strawberry's default resolver (getattr)


@dataclass(frozen=True, slots=True)
class PlainLeaf(PlainField):
    coerce: Callable[[Any], Any]  # the type's output coercion, as graphql-core completes it
    nullable: bool


@dataclass(frozen=True, slots=True)
class PlainFields:
    """The schema's plain fields, found once per schema: (type name, field name) -> field."""

    fields: dict[tuple[str, str], PlainField]
    leaves: dict[tuple[str, str], PlainLeaf]  # those of a scalar or enum type


_PLAIN: WeakKeyDictionary[GraphQLSchema, PlainFields] = WeakKeyDictionary()


def plain_fields(schema: GraphQLSchema) -> PlainFields:
    found = _PLAIN.get(schema)
    if found is not None:
        return found
    found = PlainFields({}, {})
    for type_ in schema.type_map.values():
        if not isinstance(type_, GraphQLObjectType) or type_.name.startswith("__"):
            continue
        for name, field in type_.fields.items():
            definition = (field.extensions or {}).get(GraphQLCoreConverter.DEFINITION_BACKREF)
            if (
                field.args
                or not isinstance(definition, StrawberryField)
                or not definition.is_basic_field
            ):
                continue
            plain = PlainField(definition.python_name, definition.default_resolver)
            found.fields[type_.name, name] = plain
            leaf_type = get_nullable_type(field.type)
            if is_leaf_type(leaf_type):
                coerce = leaf_type.coerce_output_value
                nullable = not is_non_null_type(field.type)
                found.leaves[type_.name, name] = PlainLeaf(
                    plain.attribute, plain.read, coerce, nullable
                )
    _PLAIN[schema] = found
    return found


def _non_null(inner: Plan) -> Plan:
    def complete(value: Any) -> Any:
        done = inner(value)
        if done is None:
            raise NotPlain
        return done

    return complete


def _listed(inner: Plan) -> Plan:
    def complete(value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, (list, tuple)):
            raise NotPlain
        return [inner(item) for item in value]

    return complete


def _leaf(coerce: Callable[[Any], Any]) -> Plan:
    def complete(value: Any) -> Any:
        if value is None:
            return None
        done = coerce(value)
        if done is None or done is Undefined:
            raise NotPlain
        return done

    return complete


def _object(steps: list[tuple[str, PlainField | None, Plan]]) -> Plan:
    """Each step: the response name, the field read (None: ``__typename``), its plan."""

    def complete(value: Any) -> Any:
        if value is None:
            return None
        answer = {}
        for name, field, plan in steps:
            answer[name] = plan(None if field is None else field.read(value, field.attribute))
        return answer

    return complete


def _constant(value: str) -> Plan:
    return lambda _: value


def planned(max_cost: int) -> type[StrawberryGraphQLCoreExecutionContext]:
    costs = OperationCosts()

    class PlannedExecutor(StrawberryGraphQLCoreExecutionContext):
        # both set as the operation starts; None: no plain path (resolve middleware)
        plain: PlainFields | None = None
        # (type, field details list) -> the list (kept alive, so that its id is not reused
        # while the operation runs, as graphql-core's own memo does) and its plan
        plans: dict[tuple[int, int], tuple[Any, Plan | None]] | None = None

        def execute_operation(
            self, serially: bool | None = None
        ) -> AwaitableOrValue[ExecutionResult]:
            root = self.schema.get_root_type(self.operation.operation)
            if root is not None:
                fragments = {name: f.definition for name, f in self.fragments.items()}
                cost = costs.cost(self.operation, root, fragments, self.variable_values)
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
                self.plans = {}
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
                try:
                    value = leaf.read(source, leaf.attribute)
                    if value is None:
                        if leaf.nullable:
                            return None
                    else:
                        coerced = leaf.coerce(value)
                        if coerced is not None and coerced is not Undefined:
                            return coerced
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
            if self.plans is not None and not isinstance(result, Exception):
                key = (id(return_type), id(field_details_list))
                known = self.plans.get(key)
                if known is None:
                    plan = self.plan(return_type, field_details_list)
                    self.plans[key] = (field_details_list, plan)
                else:
                    plan = known[1]
                if plan is not None:
                    try:
                        return plan(result)
                    except Exception:  # graphql-core's own path will report it
                        pass
            return super().complete_value(
                return_type, field_details_list, info, path, result, position_context
            )

        def plan(self, type_: GraphQLOutputType, field_details_list: Any) -> Plan | None:
            """How to complete a value of this type at this place in the query, when all of
            it is plain; None otherwise. Made once per place (the field details list is the
            same object for every value completed there)."""
            if is_non_null_type(type_):
                inner = self.plan(type_.of_type, field_details_list)
                return None if inner is None else _non_null(inner)
            if is_list_type(type_):
                inner = self.plan(type_.of_type, field_details_list)
                return None if inner is None else _listed(inner)
            if is_leaf_type(type_):
                return _leaf(type_.coerce_output_value)
            if not is_object_type(type_) or type_.is_type_of is not None:
                return None
            grouped, deferred, _ = self.collect_subfields(type_, field_details_list)
            if deferred:
                return None
            steps: list[tuple[str, PlainField | None, Plan]] = []
            for response_name, details in grouped.items():
                name = details[0].node.name.value
                if name == "__typename":
                    steps.append((response_name, None, _constant(type_.name)))
                    continue
                plain = self.plain.fields.get((type_.name, name)) if self.plain else None
                inner = self.plan(type_.fields[name].type, details) if plain else None
                if plain is None or inner is None:
                    return None
                steps.append((response_name, plain, inner))
            return _object(steps)

    return PlannedExecutor
