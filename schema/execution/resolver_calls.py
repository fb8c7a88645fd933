"""Calling a Strawberry resolver as Strawberry's own wrapper calls it, its arguments converted
once per place of a query instead of at every call.

Strawberry wraps each resolver (``GraphQLCoreConverter.from_resolver``) in a function that, at
every call, makes a ``strawberry.Info``, converts every argument graphql-core coerced into the
Python values the resolver takes (input types into their classes, enums, IDs), fills in the
self, parent, root and info parameters the resolver asks for, and calls it
(``StrawberryField.get_result``). At one place of a query the arguments are the same for
every parent, yet the nested benchmark query converted ``Book.similar``'s arguments at each
of its calls, a large share of its time (docs/architecture.md). Plans (``plans``) convert them
once per place and call the resolver with the rest of what the wrapper does.

A field keeps Strawberry's wrapper when anything could make a call differ: field extensions
(permission classes among them), the schema's exception handlers, or an argument type that
builds itself from the call's Info (``from_input``). The converted values are shared by the
calls at one place, so a resolver must not change its arguments (none here does).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import strawberry
from graphql import GraphQLField, GraphQLObjectType, GraphQLResolveInfo

from lookalike.schema.execution.strawberry_compat import (
    DEFINITION_BACKREF,
    InfoMaker,
    StrawberryConfig,
    StrawberryField,
    convert_arguments,
    get_object_definition,
    graphql_schema,
    info_maker,
)


@dataclass(frozen=True, slots=True)
class ResolverCalls:
    """What calling a schema's resolvers directly needs from the schema."""

    config: StrawberryConfig
    scalar_registry: Mapping[object, Any]
    make_info: InfoMaker  # the config's info_class, as Strawberry's wrapper makes one

    @classmethod
    def of(cls, schema: strawberry.Schema) -> ResolverCalls | None:
        """None when the schema converts exceptions (its handlers live in the wrapper)."""
        if schema.exception_handlers:
            return None
        config = schema.config
        return cls(config, schema.schema_converter.scalar_registry, info_maker(config.info_class))

    @classmethod
    def installed(cls, schema: strawberry.Schema) -> ResolverCalls | None:
        """``of(schema)``, with graphql-core calling the query root's resolvers directly too
        (``call_directly``): how an executor's plans call the schema's resolvers, set up once
        per schema."""
        calls = cls.of(schema)
        root = graphql_schema(schema).query_type
        if calls is not None and root is not None:
            calls.call_directly(root)
        return calls

    def call_directly(self, root: GraphQLObjectType) -> None:
        """graphql-core calls the resolvers of these fields (the query root's: plans start
        below them) directly too, their arguments converted at each call (a root field is
        called once a request). In the profile of a single book query Strawberry's wrapper
        (an Info, the argument conversion, an extension chain, two coroutines around the
        resolver's) cost a large share of what the resolver and its loader did
        (docs/architecture.md)."""
        for field in root.fields.values():
            definition = strawberry_field(field)
            direct = self.resolver(definition) if definition is not None else None
            if direct is not None:
                field.resolve = direct.resolve

    def resolver(self, field: StrawberryField) -> DirectResolver | None:
        """The field's resolver to call directly, or None: Strawberry's wrapper calls it."""
        resolver = field.base_resolver
        if resolver is None or field.extensions:
            return None
        if any(_builds_itself(argument.type, set()) for argument in field.arguments):
            return None

        def name(parameter: Any) -> str | None:
            return parameter.name if parameter is not None else None

        return DirectResolver(
            field,
            self,
            with_self=resolver.self_parameter is not None,
            parent=name(resolver.parent_parameter),
            root=name(resolver.root_parameter),
            info=name(resolver.info_parameter),
        )


@dataclass(frozen=True, slots=True)
class DirectResolver:
    field: StrawberryField
    calls: ResolverCalls
    with_self: bool  # the parameters that receive the parent object, and the Info
    parent: str | None
    root: str | None
    info: str | None

    def arguments(self, coerced: Mapping[str, Any]) -> dict[str, Any]:
        """graphql-core's coerced arguments as the resolver takes them: Python names and
        values (the wrapper's conversion, without an Info: no argument type here reads it)."""
        return convert_arguments(
            dict(coerced),
            self.field.arguments,
            scalar_registry=self.calls.scalar_registry,
            config=self.calls.config,
        )

    def resolve(self, source: Any, info: GraphQLResolveInfo[Any], /, **coerced: Any) -> Any:
        """As graphql-core calls a field's resolver: the arguments converted for this call
        (positional-only: an argument may be called ``source`` or ``info``)."""
        return self(source, info, self.arguments(coerced))

    def __call__(
        self, source: Any, info: GraphQLResolveInfo[Any], arguments: Mapping[str, Any]
    ) -> Any:
        """The resolver's result for ``source``, ``arguments`` as ``arguments`` made them."""
        strawberry_info = self.calls.make_info(info, self.field)
        kwargs = dict(arguments)  # shared by the place's calls: each adds its own parameters
        if self.parent is not None:
            kwargs[self.parent] = source
        if self.root is not None:
            kwargs[self.root] = source
        if self.info is not None:
            kwargs[self.info] = strawberry_info
        args = [source] if self.with_self else []
        return self.field.get_result(source, info=strawberry_info, args=args, kwargs=kwargs)


def strawberry_field(field: GraphQLField) -> StrawberryField | None:
    """The Strawberry field a graphql-core field was made from (None: one of graphql-core's)."""
    definition = (field.extensions or {}).get(DEFINITION_BACKREF)
    return definition if isinstance(definition, StrawberryField) else None


def _builds_itself(type_: Any, seen: set[int]) -> bool:
    """Whether an argument of this type, or an input type inside it, builds itself from the
    call's Info (``from_input``)."""
    while hasattr(type_, "of_type"):  # optional, list
        type_ = type_.of_type
    definition = get_object_definition(type_)
    if definition is None or id(definition) in seen:
        return False
    seen.add(id(definition))
    if definition.from_input is not None:
        return True
    return any(_builds_itself(field.type, seen) for field in definition.fields)
