"""Every use lookalike makes of Strawberry's undocumented parts, each saying what it relies on.

Checked with strawberry-graphql 0.341.3 (pyproject.toml bounds it below 0.342). Strawberry's
documented API is its top level (``strawberry.type``, ``field``, ``Schema``, ``Info``...);
what is named here lives in its ``schema``, ``types`` and ``execution`` packages. Plain
re-exports and aliases, no wrapper, where the name is used per field: the plans call them on
hot paths. tests/schema/execution/test_execution.py and test_fast_path.py run them against
the real schema; when one breaks, graphql-core's own execution answers (``plans.Fallback``).
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Mapping
from typing import Any

import strawberry
from graphql import GraphQLResolveInfo, GraphQLSchema

# Strawberry's check for an awaitable (fast for plain values), as its own ``execute`` passes it
# to graphql-core's ``execute(is_awaitable=...)``
from strawberry.execution.is_awaitable import optimized_is_awaitable as is_awaitable

# the schema's configuration (``Schema.config``: ``info_class``, ``name_converter``) and the
# converter of Python names into GraphQL names, subclassed to remember its answers
# (schema.py, ``RememberedNames``: ``apply_naming_config``)
from strawberry.schema.config import StrawberryConfig
from strawberry.schema.name_converter import NameConverter

# the execution context Strawberry's own ``execute`` hands graphql-core; executor.py subclasses
# it (graphql_compat says which of graphql-core's methods it overrides)
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext as ExecutionContext

# Strawberry's validation: graphql-core's ``validate`` with the rules given, as its own
# ``execute`` runs it (``validate_document(schema, document, rules)``)
from strawberry.schema.schema import validate_document

# the converter's key in a graphql-core field's ``extensions`` holding the StrawberryField it
# was made from (resolver_calls.py, ``strawberry_field``)
from strawberry.schema.schema_converter import GraphQLCoreConverter

# what Strawberry's resolver wrapper does at every call: ``convert_arguments(coerced,
# field.arguments, scalar_registry=, config=)`` turns graphql-core's coerced arguments into
# the resolver's Python values; ``get_object_definition`` reads a type's definition (its
# ``from_input``, ``fields``); ``StrawberryField`` (``base_resolver``, ``arguments``,
# ``extensions``, ``get_result(source, info=, args=, kwargs=)``)
from strawberry.types.arguments import convert_arguments
from strawberry.types.base import get_object_definition
from strawberry.types.field import StrawberryField

DEFINITION_BACKREF: str = GraphQLCoreConverter.DEFINITION_BACKREF

__all__ = [
    "DEFINITION_BACKREF",
    "ExecutionContext",
    "InfoMaker",
    "NameConverter",
    "StrawberryConfig",
    "StrawberryField",
    "convert_arguments",
    "describe_enum_values",
    "get_object_definition",
    "graphql_schema",
    "info_maker",
    "is_awaitable",
    "validate_document",
]

InfoMaker = Callable[[GraphQLResolveInfo[Any], StrawberryField], strawberry.Info[Any, Any]]


def describe_enum_values(descriptions: Mapping[enum.Enum, str]) -> None:
    """Give the values of enums made with ``strawberry.enum(cls)`` their descriptions: the
    documented ``strawberry.enum_value(description=)`` works only inside the enum's own
    class, and the services' enums may not import strawberry.

    Relies on: ``strawberry.enum`` leaving ``cls.__strawberry_definition__.values``, a list of
    ``strawberry.types.enum.EnumValue`` (a mutable dataclass with ``value`` and
    ``description``), read when a schema is built. Call it before the schema is made."""
    for member, text in descriptions.items():
        definition = type(member).__strawberry_definition__  # type: ignore[attr-defined]
        (value,) = [v for v in definition.values if v.value == member.value]
        value.description = text


def graphql_schema(schema: strawberry.Schema) -> GraphQLSchema:
    """The graphql-core schema a Strawberry schema made: ``Schema._schema`` (set in
    ``Schema.__init__``; Strawberry's own ``execute`` and ``validate`` pass it to graphql-core).
    Read per schema, never per request."""
    return schema._schema


def info_maker(info_class: type[strawberry.Info[Any, Any]]) -> InfoMaker:
    """How to make the ``strawberry.Info`` a resolver receives from graphql-core's
    ResolveInfo and the field, as Strawberry's wrapper does (``info_class(_raw_info=,
    _field=)``, private fields). Fetched once per schema: when ``info_class`` is the dataclass
    whose first two fields are those (``strawberry.Info``), the class itself, called with
    them by position (no call more per field); else a function naming them."""
    if dataclasses.is_dataclass(info_class):
        names = [field.name for field in dataclasses.fields(info_class)]
        if names[:2] == ["_raw_info", "_field"]:
            return info_class

    def make(raw: GraphQLResolveInfo[Any], field: StrawberryField) -> strawberry.Info[Any, Any]:
        return info_class(_raw_info=raw, _field=field)

    return make
