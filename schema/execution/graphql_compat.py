"""Every use lookalike makes of graphql-core's undocumented parts, each saying what it relies on.

Checked with graphql-core 3.3.2 (pyproject.toml bounds it below 3.4). graphql-core's documented
API is its top level (``from graphql import ...``); its ``execution`` and ``pyutils`` packages
are imported here only. Plain aliases, no wrapper: the plans call these per field.

What cannot be fenced by an import is listed here too, for whoever upgrades graphql-core:
executor.py's ``PlannedExecutor`` (a subclass of Strawberry's execution context, itself
graphql-core's ``Executor``) overrides ``execute_operation(serially)``,
``execute_field(parent_type, source, field_details_list, path, position_context)`` and
``complete_value(return_type, field_details_list, info, path, result, position_context)``, and
reads the executor's ``schema``, ``operation``, ``fragments`` (``.definition``),
``variable_values`` (``.coerced``), ``context_value``, ``middleware_manager``
(``.middlewares``), ``field_resolver``, ``is_awaitable`` and ``hide_suggestions``; a
``field_details_list`` item's ``.node``. tests/schema/execution/ run all of them against the
real schema.
"""

from __future__ import annotations

# the response path graphql-core gives each field (``Path(prev, key, typename)``) and its
# return annotation for what may be awaited
from graphql.pyutils import AwaitableOrValue, Path

from lookalike.schema.execution.strawberry_compat import ExecutionContext

__all__ = ["AwaitableOrValue", "Path", "build_resolve_info", "collect_subfields"]

# The executor's own methods, as functions taking the executor first: the plans call them per
# field, through these aliases fetched once (no call more than the method's; an override in a
# subclass of the execution context would not be seen: executor.py overrides neither).
# ``collect_subfields(executor, return_type, field_details_list)`` -> (fields by response
# name, deferred usages, ...), cached per return type and field nodes by graphql-core;
# ``build_resolve_info(executor, field_def, field_nodes, parent_type, path)`` -> the field's
# GraphQLResolveInfo, as graphql-core gives it to a resolver.
collect_subfields = ExecutionContext.collect_subfields
build_resolve_info = ExecutionContext.build_resolve_info
