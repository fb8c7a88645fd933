"""Completing values without graphql-core's per-field machinery: plans made once per place.

Most of a nested answer is plain data: a list of matches, each a distance and a book with its
title (the benchmark's 20 x 5 x 5 query has 1,982 fields). graphql-core spends on every field
what it spends on a field with a resolver: a ResolveInfo, a path, the resolver call through
Strawberry's wrapper, awaitable checks, a coroutine and an asyncio task for each object that
waits on a loader. A plan completes a value of one type at one place in the query:

- a **plain** field (Strawberry would answer it by reading an attribute: no resolver, no
  field extension, no arguments) is read and coerced by the scalar's own output coercion;
- a field with a **resolver** (``Book.similar``, ``Book.withinRadius``: they ask the
  request's loaders) is called as graphql-core calls it (the same ResolveInfo, path and
  coerced arguments, worked out once per place), and what it returns is awaited together
  with every other resolver of the same level: one await a level, no task a book, and the
  loaders still see the whole level at once;
- ``__typename`` is the type's name.

A plan is made once per place of an operation and kept with the operation (a document sent
again is the same parsed operation: ``documents``), for the values of the variables its
``@skip``/``@include`` read: a request runs plans made by an earlier one. What a request
brings is passed in as it runs (``Run``: its executor, the resolver results waiting for their
level, the arguments of resolver fields that hold variables, coerced once per place);
arguments without variables are coerced when the plan is made. Anything unusual about a value
(a failed read, a null in a non-null field, a value a scalar refuses, something that is not a
list, a resolver that raises or fails, arguments that do not coerce) sends the whole value
through graphql-core's own completion, which reports it exactly as before; its resolvers
answer from the loaders' caches, so nothing is asked of Redis twice (a failure can split the
next level's keys into more than one batch: graphql-core's own path awaits its objects one
task each).
Resolve middleware, abstract types, types with an ``is_type_of`` check, deferred fragments
and operations other than queries are never planned.

Every fallback of a query to graphql-core's own execution is counted in /metrics by its reason
(``Fallback``), and the first of each reason in a process is logged: plans rely on parts of
graphql-core and Strawberry that are not public, and an upgrade that broke them would otherwise
only make the answers slower.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from inspect import isawaitable
from typing import Any
from weakref import WeakKeyDictionary

from graphql import (
    FieldNode,
    GraphQLField,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLSchema,
    Undefined,
    VariableValues,
    get_argument_values,
    get_nullable_type,
    is_leaf_type,
    is_list_type,
    is_non_null_type,
    is_object_type,
)
from graphql.language import ListValueNode, ObjectValueNode, ValueNode, VariableNode

from lookalike.schema.execution.graphql_compat import Path, build_resolve_info, collect_subfields
from lookalike.schema.execution.resolver_calls import (
    DirectResolver,
    ResolverCalls,
    strawberry_field,
)
from lookalike.schema.operations.cache import Fragments, ValuesCache, directive_variables
from lookalike.schema.operations.documents import CACHE_ENTRIES, CACHE_TEXT
from lookalike.services.core.metrics import FALLBACKS

log = logging.getLogger("lookalike.graphql")


class Fallback(Enum):
    """Why graphql-core's own execution completed a value instead of a plan: the label of
    ``lookalike_graphql_fallbacks``. The first four come with an error the answer reports;
    the others are places plans do not serve, and ``error`` is a failure of the plans
    themselves (graphql-core's or Strawberry's internals they use may have changed)."""

    VALUE = "value"  # a null in a non-null field, not a list, a value a scalar refuses
    LEAF = "leaf"  # the same, for a plain leaf beside fields graphql-core runs
    RESOLVER = "resolver"  # a resolver raised, or what it returned failed
    ARGUMENTS = "arguments"  # a resolver's arguments did not coerce
    ABSTRACT_TYPE = "abstract_type"  # an interface, a union, a type with is_type_of
    DEFERRED = "deferred"  # @defer
    FRAGMENT_ARGUMENTS = "fragment_arguments"
    FOREIGN_FIELD = "foreign_field"  # a field Strawberry did not make (or no longer marks)
    MIDDLEWARE = "middleware"  # resolve middleware sees every field: no plans at all
    WRAPPER = "wrapper"  # a resolver called through Strawberry's wrapper, not directly
    ERROR = "error"


_warned: set[Fallback] = set()


def fell_back(reason: Fallback, error: BaseException | None = None) -> None:
    """Count one operation that fell back for ``reason``; log the first of each reason (with
    the traceback of an ``error``): a steady count of a reason that is not an error the
    answers report means the fast path is off."""
    FALLBACKS.labels(reason.value).inc()
    if reason not in _warned:
        _warned.add(reason)
        log.warning(
            "a query fell back to graphql-core's own execution (%s); further ones are counted "
            "in lookalike_graphql_fallbacks",
            reason.value,
            exc_info=error if reason is Fallback.ERROR else None,
        )


class NotPlain(Exception):
    """This value needs graphql-core's own completion (which will report what is wrong)."""

    def __init__(self, reason: Fallback = Fallback.VALUE) -> None:
        super().__init__(reason.value)
        self.reason = reason


MAX_PLANS = 20_000  # plans kept in all (OperationPlans); a plan's size: docs/architecture.md


@dataclass(frozen=True, slots=True)
class PlainField:
    """A field Strawberry answers by reading an attribute of its parent."""

    attribute: str
    read: Callable[[Any, str], Any]  # Strawberry's default resolver (getattr)


@dataclass(frozen=True, slots=True)
class PlainLeaf(PlainField):
    complete: Plan  # its plan: the type's output coercion, as graphql-core completes it


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
            definition = strawberry_field(field)
            if field.args or definition is None or not definition.is_basic_field:
                continue
            plain = PlainField(definition.python_name, definition.default_resolver)
            found.fields[type_.name, name] = plain
            leaf_type = get_nullable_type(field.type)
            if is_leaf_type(leaf_type):
                complete = _leaf(leaf_type.coerce_output_value)
                if is_non_null_type(field.type):
                    complete = _non_null(complete)
                found.leaves[type_.name, name] = PlainLeaf(plain.attribute, plain.read, complete)
    _PLAIN[schema] = found
    return found


@dataclass(slots=True)
class Waiting:
    """A resolver's awaitable result, to be completed by ``plan`` into ``answer[key]``."""

    answer: dict[str, Any]
    key: str
    result: Awaitable[Any]
    plan: Plan
    path: Path


class Run:
    """What the plans completing one value share in one request: the executor running it, the
    resolver results left waiting for their level, and the arguments of each resolver place
    whose arguments hold variables (coerced once)."""

    __slots__ = ("arguments", "executor", "pending")

    def __init__(self, executor: Any) -> None:
        self.executor = executor
        self.pending: list[Waiting] = []
        self.arguments: dict[int, dict[str, Any]] = {}


# A value, its path (None where nothing below needs one) and the request's run -> its
# completed answer; raises for anything graphql-core must complete instead.
Plan = Callable[[Any, Path | None, Run], Any]
NO_RUN = Run(None)  # for a leaf completed on its own: a leaf's plan never reads its run


@dataclass(frozen=True, slots=True)
class Made:
    plan: Plan
    needs_path: bool  # a resolver below: its ResolveInfo needs the path


# (id of the type, ids of the field nodes) -> the nodes (kept alive, so that their ids are
# not reused while the plan is) and what was made for that place (a Fallback: graphql-core's)
Places = dict[tuple[int, tuple[int, ...]], tuple[tuple[FieldNode, ...], Made | Fallback]]


class OperationPlans:
    """The plans of each operation, per values of the variables its ``@skip``/``@include``
    read (they decide which fields a place runs), kept like the executor's other per-operation
    work (``size`` operations, their documents ``budget`` characters in all, ``per_operation``
    sets of values each) and bounded by what they hold: a plan is far larger than the text
    that asks for it (a 1 KB document can hold thousands of plans per set of values), so past
    ``max_plans`` plans made in all every kept plan is let go and made again as requests need
    it."""

    def __init__(
        self,
        size: int = CACHE_ENTRIES,
        budget: int = CACHE_TEXT,
        per_operation: int = 8,
        max_plans: int = MAX_PLANS,
    ) -> None:
        self.max_plans = max_plans
        self.plans = 0  # plans made since the store was last emptied
        self.kept: ValuesCache[Places] = ValuesCache(
            directive_variables, size, budget, per_operation
        )

    def made(self) -> None:
        """One more plan made (a place's type, or a type wrapped in it); past the bound, no
        plan is kept."""
        self.plans += 1
        if self.plans > self.max_plans:
            self.plans = 0
            self.kept.clear()

    def planner(
        self,
        executor: Any,
        plain: PlainFields,
        fragments: Fragments,
        calls: ResolverCalls | None,
    ) -> Planner:
        """The planner of the operation ``executor`` runs, with the plans made so far;
        ``calls``: Strawberry's resolvers are called directly (``resolver_calls``)."""
        variables: VariableValues = executor.variable_values
        places = self.kept.get(executor.operation, fragments, variables.coerced, dict)
        return Planner(executor, plain, places, calls, self)


class Planner:
    """Completes values of one request by the operation's plans, making those it lacks.
    ``executor`` is graphql-core's Executor running the request."""

    def __init__(
        self,
        executor: Any,
        plain: PlainFields,
        places: Places,
        calls: ResolverCalls | None,
        kept: OperationPlans,
    ) -> None:
        self.executor = executor
        self.plain = plain
        self.places = places
        self.calls = calls
        self.kept = kept

    def complete(
        self, return_type: GraphQLOutputType, field_details_list: Any, path: Path, result: Any
    ) -> Any:
        """The completed value, a coroutine of it, or the Fallback of a place no plan can
        serve; NotPlain (or what a read raised) for a value graphql-core must complete."""
        nodes = tuple(details.node for details in field_details_list)
        key = (id(return_type), tuple(map(id, nodes)))
        known = self.places.get(key)
        if known is None:
            made = self.make(return_type, field_details_list)
            self.places[key] = (nodes, made)
        else:
            made = known[1]
        return made if isinstance(made, Fallback) else self._run(made, result, path)

    def _run(self, made: Made, value: Any, path: Path | None) -> Any:
        run = Run(self.executor)
        try:
            answer = made.plan(value, path, run)
        except Exception:
            _discard(run.pending)
            raise
        return self.settle(answer, run) if run.pending else answer

    async def settle(self, answer: Any, run: Run) -> Any:
        """Await a level's resolver results together, complete them (which calls the next
        level's resolvers), until nothing waits."""
        pending = run.pending
        while pending:
            level = pending[:]
            pending.clear()
            if len(level) == 1:  # one field (a single book's similar): no gathering future
                try:
                    results = [await level[0].result]
                except Exception as error:
                    raise NotPlain(Fallback.RESOLVER) from error
            else:
                results = await asyncio.gather(*(w.result for w in level), return_exceptions=True)
                failed = next((r for r in results if isinstance(r, BaseException)), None)
                if failed is not None:  # before the next level is asked for: nothing wasted
                    raise NotPlain(Fallback.RESOLVER) from failed
            try:
                for waiting, result in zip(level, results, strict=True):
                    waiting.answer[waiting.key] = waiting.plan(result, waiting.path, run)
            except Exception:
                _discard(pending)  # the next level's coroutines will not be awaited here
                raise
        return answer

    def make(self, type_: GraphQLOutputType, field_details_list: Any) -> Made | Fallback:
        self.kept.made()
        if is_non_null_type(type_):
            inner = self.make(type_.of_type, field_details_list)
            if isinstance(inner, Fallback):
                return inner
            return Made(_non_null(inner.plan), inner.needs_path)
        if is_list_type(type_):
            inner = self.make(type_.of_type, field_details_list)
            return inner if isinstance(inner, Fallback) else Made(_listed(inner), inner.needs_path)
        if is_leaf_type(type_):
            return Made(_leaf(type_.coerce_output_value), needs_path=False)
        if not is_object_type(type_) or type_.is_type_of is not None:
            return Fallback.ABSTRACT_TYPE
        grouped, deferred, _ = collect_subfields(self.executor, type_, field_details_list)
        return Fallback.DEFERRED if deferred else self._fields(type_, grouped)

    def _fields(self, type_: GraphQLObjectType, grouped: Mapping[str, Any]) -> Made | Fallback:
        """The plan of an object of ``type_`` whose fields, by response name, are these."""
        steps: list[Step] = []
        for response_name, details in grouped.items():
            step = self.step(type_, response_name, details)
            if isinstance(step, Fallback):
                return step
            steps.append(step)
        needs_path = any(
            isinstance(step, Resolve) or (isinstance(step, Read) and step.made.needs_path)
            for step in steps
        )
        return Made(_object(type_.name, steps), needs_path)

    def step(self, parent: GraphQLObjectType, response_name: str, details: Any) -> Step | Fallback:
        name = details[0].node.name.value
        if name == "__typename":
            return Typename(response_name, parent.name)
        field = parent.fields.get(name)
        if field is None:
            return Fallback.FOREIGN_FIELD
        if any(d.fragment_variable_values is not None for d in details):
            return Fallback.FRAGMENT_ARGUMENTS
        plain = self.plain.fields.get((parent.name, name))
        made = self.make(field.type, details)
        if isinstance(made, Fallback):
            return made
        if plain is not None:
            return Read(response_name, plain, made)
        definition = strawberry_field(field)
        if definition is None:
            return Fallback.FOREIGN_FIELD
        executor = self.executor
        node: FieldNode = details[0].node
        direct = self.calls.resolver(definition) if self.calls is not None else None
        fixed: dict[str, Any] | None = None
        if not any(_holds_variables(argument.value) for argument in node.arguments or ()):
            try:  # the same in every request: coerced (and converted) once
                fixed = _arguments(field, node, executor, direct)
            except Exception:  # graphql-core's own path will report it
                return Fallback.ARGUMENTS
        return Resolve(
            response_name,
            field,
            parent,
            [d.node for d in details],
            field.resolve or executor.field_resolver,
            direct,
            fixed,
            made,
            executor.is_awaitable,
        )


def _arguments(
    field: GraphQLField, node: FieldNode, executor: Any, direct: DirectResolver | None
) -> dict[str, Any]:
    """The field's arguments as its resolver is called with them: coerced by graphql-core,
    then converted for a resolver called directly."""
    coerced = get_argument_values(
        field, node, executor.variable_values, None, executor.hide_suggestions
    )
    return coerced if direct is None else direct.arguments(coerced)


def _holds_variables(value: ValueNode) -> bool:
    pending = [value]
    while pending:
        value = pending.pop()
        if isinstance(value, VariableNode):
            return True
        if isinstance(value, ListValueNode):
            pending.extend(value.values)
        elif isinstance(value, ObjectValueNode):
            pending.extend(f.value for f in value.fields)
    return False


@dataclass(frozen=True, slots=True)
class Read:
    name: str
    field: PlainField
    made: Made


@dataclass(frozen=True, slots=True)
class Resolve:
    name: str
    field: GraphQLField
    parent: GraphQLObjectType
    nodes: list[FieldNode]
    resolve: Callable[..., Any]  # graphql-core's resolver: Strawberry's wrapper
    direct: DirectResolver | None  # or the resolver itself (then arguments are converted)
    fixed: Mapping[str, Any] | None  # the arguments, when no variable is in them
    made: Made
    is_awaitable: Callable[[Any], bool]

    def call(self, source: Any, path: Path, run: Run) -> Any:
        """The resolver's result, called as graphql-core (or Strawberry's wrapper) calls it."""
        arguments = self.fixed
        if arguments is None:
            arguments = run.arguments.get(id(self))
            if arguments is None:
                try:
                    arguments = _arguments(self.field, self.nodes[0], run.executor, self.direct)
                except Exception:  # graphql-core's own path will report it
                    raise NotPlain(Fallback.ARGUMENTS) from None
                run.arguments[id(self)] = arguments
        info = build_resolve_info(run.executor, self.field, self.nodes, self.parent, path)
        try:
            if self.direct is not None:
                return self.direct(source, info, arguments)
            run.executor.fell_back(Fallback.WRAPPER)
            return self.resolve(source, info, **arguments)
        except Exception as error:  # graphql-core calls it again, and reports what it raises
            raise NotPlain(Fallback.RESOLVER) from error


@dataclass(frozen=True, slots=True)
class Typename:
    name: str
    type_name: str


Step = Read | Resolve | Typename


def _object(type_name: str, steps: list[Step]) -> Plan:
    def complete(value: Any, path: Path | None, run: Run) -> Any:
        if value is None:
            return None
        answer: dict[str, Any] = {}
        for step in steps:
            if isinstance(step, Read):  # most steps: no path made unless a resolver is below
                field = step.field
                below = Path(path, step.name, type_name) if step.made.needs_path else None
                answer[step.name] = step.made.plan(field.read(value, field.attribute), below, run)
            elif isinstance(step, Typename):
                answer[step.name] = step.type_name
            else:
                below = Path(path, step.name, type_name)
                result = step.call(value, below, run)
                if step.is_awaitable(result):
                    answer[step.name] = None  # filled in when the level is settled
                    run.pending.append(Waiting(answer, step.name, result, step.made.plan, below))
                else:
                    answer[step.name] = step.made.plan(result, below, run)
        return answer

    return complete


def _non_null(inner: Plan) -> Plan:
    def complete(value: Any, path: Path | None, run: Run) -> Any:
        done = inner(value, path, run)
        if done is None:
            raise NotPlain
        return done

    return complete


def _listed(inner: Made) -> Plan:
    plan, needs_path = inner.plan, inner.needs_path

    def items(value: Any, path: Path | None, run: Run) -> Any:
        if value is None:
            return None
        if not isinstance(value, (list, tuple)):
            raise NotPlain
        if needs_path:
            return [plan(item, Path(path, n, None), run) for n, item in enumerate(value)]
        return [plan(item, None, run) for item in value]

    return items


# What a leaf usually holds; anything else is first checked for an awaitable (graphql-core
# awaits one; a String's coercion would write it out as text).
SCALAR_VALUES = frozenset({str, int, float, bool})


def _settled(value: Any) -> bool:
    return type(value) in SCALAR_VALUES or not isawaitable(value)


def _leaf(coerce: Callable[[Any], Any]) -> Plan:
    def complete(value: Any, path: Path | None, run: Run) -> Any:
        if value is None:
            return None
        if not _settled(value):
            raise NotPlain
        done = coerce(value)
        if done is None or done is Undefined:
            raise NotPlain
        return done

    return complete


def _discard(pending: list[Waiting]) -> None:
    """Close coroutines that will not be awaited (a loader's future needs nothing)."""
    for waiting in pending:
        close = getattr(waiting.result, "close", None)
        if asyncio.iscoroutine(waiting.result) and close is not None:
            close()
    pending.clear()
