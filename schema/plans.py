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

A plan is made once per place (graphql-core hands the same field details list for every
value completed there). Anything unusual about a value (a failed read, a null in a non-null
field, a value a scalar refuses, something that is not a list, a resolver that raises or
fails) sends the whole value through graphql-core's own completion, which reports it exactly
as before; its resolvers answer from the loaders' caches, so nothing is asked of Redis twice
(a failure can split the next level's keys into more than one batch: graphql-core's own path
awaits its objects one task each).
Resolve middleware, abstract types, types with an ``is_type_of`` check, deferred fragments
and operations other than queries are never planned.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from inspect import isawaitable
from typing import Any
from weakref import WeakKeyDictionary

from graphql import (
    GraphQLError,
    GraphQLField,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLSchema,
    get_argument_values,
    get_nullable_type,
    is_leaf_type,
    is_list_type,
    is_non_null_type,
    is_object_type,
)
from graphql.pyutils import Path, Undefined
from strawberry.schema.schema_converter import GraphQLCoreConverter
from strawberry.types.field import StrawberryField


class NotPlain(Exception):
    """This value needs graphql-core's own completion (which will report what is wrong)."""


UNPLANNED = object()  # Planner.complete: this place is graphql-core's to complete


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
            definition = _definition(field)
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


def _definition(field: GraphQLField) -> StrawberryField | None:
    definition = (field.extensions or {}).get(GraphQLCoreConverter.DEFINITION_BACKREF)
    return definition if isinstance(definition, StrawberryField) else None


@dataclass(slots=True)
class Waiting:
    """A resolver's awaitable result, to be completed by ``plan`` into ``answer[key]``."""

    answer: dict[str, Any]
    key: str
    result: Awaitable[Any]
    plan: Plan
    path: Path


Pending = list[Waiting]
# A value, its path (None where nothing below needs one) and the results it leaves waiting
# -> its completed answer; raises for anything graphql-core must complete instead.
Plan = Callable[[Any, Path | None, Pending], Any]


@dataclass(frozen=True, slots=True)
class Made:
    plan: Plan
    needs_path: bool  # a resolver below: its ResolveInfo needs the path


class Planner:
    """The plans of one operation (made as its values are first completed), and what their
    resolver fields are called with. ``executor`` is graphql-core's Executor running it."""

    def __init__(self, executor: Any, plain: PlainFields) -> None:
        self.executor = executor
        self.plain = plain
        # (type, field details list) -> the list (kept alive, so that its id is not reused
        # while the operation runs, as graphql-core's own memo does) and what was made
        self.made: dict[tuple[int, int], tuple[Any, Made | None]] = {}

    def complete(
        self, return_type: GraphQLOutputType, field_details_list: Any, path: Path, result: Any
    ) -> Any:
        """The completed value, a coroutine of it, or UNPLANNED for a place no plan can
        serve; NotPlain (or what a read raised) for a value graphql-core must complete."""
        key = (id(return_type), id(field_details_list))
        known = self.made.get(key)
        if known is None:
            made = self.make(return_type, field_details_list)
            self.made[key] = (field_details_list, made)
        else:
            made = known[1]
        if made is None:
            return UNPLANNED
        pending: Pending = []
        try:
            answer = made.plan(result, path, pending)
        except Exception:
            _discard(pending)
            raise
        return self.settle(answer, pending) if pending else answer

    async def settle(self, answer: Any, pending: Pending) -> Any:
        """Await a level's resolver results together, complete them (which calls the next
        level's resolvers), until nothing waits."""
        while pending:
            level = pending[:]
            pending.clear()
            results = await asyncio.gather(*(w.result for w in level), return_exceptions=True)
            failed = next((r for r in results if isinstance(r, BaseException)), None)
            if failed is not None:  # before the next level is asked for: nothing wasted
                raise NotPlain from failed
            try:
                for waiting, result in zip(level, results, strict=True):
                    waiting.answer[waiting.key] = waiting.plan(result, waiting.path, pending)
            except Exception:
                _discard(pending)  # the next level's coroutines will not be awaited here
                raise
        return answer

    def make(self, type_: GraphQLOutputType, field_details_list: Any) -> Made | None:
        if is_non_null_type(type_):
            inner = self.make(type_.of_type, field_details_list)
            return None if inner is None else Made(_non_null(inner.plan), inner.needs_path)
        if is_list_type(type_):
            inner = self.make(type_.of_type, field_details_list)
            return None if inner is None else Made(_listed(inner), inner.needs_path)
        if is_leaf_type(type_):
            return Made(_leaf(type_.coerce_output_value), needs_path=False)
        if not is_object_type(type_) or type_.is_type_of is not None:
            return None
        grouped, deferred, _ = self.executor.collect_subfields(type_, field_details_list)
        if deferred:
            return None
        steps: list[Step] = []
        for response_name, details in grouped.items():
            step = self.step(type_, response_name, details)
            if step is None:
                return None
            steps.append(step)
        needs_path = any(
            isinstance(step, Resolve) or (isinstance(step, Read) and step.made.needs_path)
            for step in steps
        )
        return Made(_object(type_.name, steps), needs_path)

    def step(self, parent: GraphQLObjectType, response_name: str, details: Any) -> Step | None:
        name = details[0].node.name.value
        if name == "__typename":
            return Typename(response_name, parent.name)
        field = parent.fields.get(name)
        if field is None:
            return None
        plain = self.plain.fields.get((parent.name, name))
        made = self.make(field.type, details)
        if made is None:
            return None
        if plain is not None:
            return Read(response_name, plain, made)
        if _definition(field) is None:
            return None
        try:  # the same for every parent at this place: coerced once
            arguments = get_argument_values(
                field,
                details[0].node,
                self.executor.variable_values,
                details[0].fragment_variable_values,
                self.executor.hide_suggestions,
            )
        except GraphQLError:
            return None
        executor = self.executor
        nodes = [d.node for d in details]
        resolve = field.resolve or executor.field_resolver

        def call(source: Any, path: Path) -> Any:
            info = executor.build_resolve_info(field, nodes, parent, path)
            return resolve(source, info, **arguments)

        return Resolve(response_name, call, made, executor.is_awaitable)


@dataclass(frozen=True, slots=True)
class Read:
    name: str
    field: PlainField
    made: Made


@dataclass(frozen=True, slots=True)
class Resolve:
    name: str
    call: Callable[[Any, Path], Any]
    made: Made
    is_awaitable: Callable[[Any], bool]


@dataclass(frozen=True, slots=True)
class Typename:
    name: str
    type_name: str


Step = Read | Resolve | Typename


def _object(type_name: str, steps: list[Step]) -> Plan:
    def complete(value: Any, path: Path | None, pending: Pending) -> Any:
        if value is None:
            return None
        answer: dict[str, Any] = {}
        for step in steps:
            if isinstance(step, Read):  # most steps: no path made unless a resolver is below
                field = step.field
                below = Path(path, step.name, type_name) if step.made.needs_path else None
                answer[step.name] = step.made.plan(
                    field.read(value, field.attribute), below, pending
                )
            elif isinstance(step, Typename):
                answer[step.name] = step.type_name
            else:
                below = Path(path, step.name, type_name)
                result = step.call(value, below)
                if step.is_awaitable(result):
                    answer[step.name] = None  # filled in when the level is settled
                    pending.append(Waiting(answer, step.name, result, step.made.plan, below))
                else:
                    answer[step.name] = step.made.plan(result, below, pending)
        return answer

    return complete


def _non_null(inner: Plan) -> Plan:
    def complete(value: Any, path: Path | None, pending: Pending) -> Any:
        done = inner(value, path, pending)
        if done is None:
            raise NotPlain
        return done

    return complete


def _listed(inner: Made) -> Plan:
    plan, needs_path = inner.plan, inner.needs_path

    def items(value: Any, path: Path | None, pending: Pending) -> Any:
        if value is None:
            return None
        if not isinstance(value, (list, tuple)):
            raise NotPlain
        if needs_path:
            return [plan(item, Path(path, n, None), pending) for n, item in enumerate(value)]
        return [plan(item, None, pending) for item in value]

    return items


# What a leaf usually holds; anything else is first checked for an awaitable (graphql-core
# awaits one; a String's coercion would write it out as text).
SCALAR_VALUES = frozenset({str, int, float, bool})


def _settled(value: Any) -> bool:
    return type(value) in SCALAR_VALUES or not isawaitable(value)


def _leaf(coerce: Callable[[Any], Any]) -> Plan:
    def complete(value: Any, path: Path | None, pending: Pending) -> Any:
        if value is None:
            return None
        if not _settled(value):
            raise NotPlain
        done = coerce(value)
        if done is None or done is Undefined:
            raise NotPlain
        return done

    return complete


def _discard(pending: Pending) -> None:
    """Close coroutines that will not be awaited (a loader's future needs nothing)."""
    for waiting in pending:
        close = getattr(waiting.result, "close", None)
        if asyncio.iscoroutine(waiting.result) and close is not None:
            close()
    pending.clear()
