"""The introspection queries tools send are answered under the default limits; abusive
introspection is refused with a code.

GraphiQL, Apollo's tooling (Rover, the iOS and Kotlin code generators) and graphql-codegen all
send graphql-js's ``getIntrospectionQuery`` (graphql-core's ``get_introspection_query`` is
the same query); its deepest variant nests ``ofType`` nine levels, 15 levels in all.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from graphql import build_client_schema, get_introspection_query
from starlette.testclient import TestClient

from tests.conftest import error_codes, gql

EVERY_OPTION = {
    "descriptions": True,
    "specified_by_url": True,
    "directive_is_repeatable": True,
    "schema_description": True,
    "input_value_deprecation": True,
    "one_of": True,
}


@pytest.mark.parametrize(
    "options",
    [
        {},  # graphql-js's defaults: what Apollo Rover and graphql-codegen send
        {"input_value_deprecation": True, "schema_description": True},  # GraphiQL's
        EVERY_OPTION,
        {**EVERY_OPTION, "type_depth": 9},
    ],
)
def test_standard_introspection_queries_are_answered(
    api: TestClient, options: dict[str, Any]
) -> None:
    body = gql(api, get_introspection_query(**options))
    assert "errors" not in body, body
    schema = build_client_schema(body["data"])
    assert {"book", "books", "searchBooks", "genres"} <= set(schema.query_type.fields)  # type: ignore[union-attr]


def _of_type(levels: int) -> str:
    inner = "name"
    for _ in range(levels):
        inner = f"kind ofType {{ {inner} }}"
    return inner


def test_of_type_nested_dozens_deep_is_refused(api: TestClient) -> None:
    query = f'{{ __type(name: "Book") {{ fields {{ type {{ {_of_type(30)} }} }} }} }}'
    body = gql(api, query)
    assert error_codes(body) == ["QUERY_TOO_COMPLEX"]
    assert body["errors"][0]["extensions"]["maxDepth"] == 20


@pytest.mark.parametrize(("count", "limit"), [(100, "maxAliases"), (300, "maxTokens")])
def test_type_aliased_hundreds_of_times_is_refused(api: TestClient, count: int, limit: str) -> None:
    aliased = " ".join(f't{n}: __type(name: "Book") {{ name }}' for n in range(count))
    body = gql(api, "{ " + aliased + " }")
    assert error_codes(body) == ["QUERY_TOO_COMPLEX"]
    assert limit in body["errors"][0]["extensions"]


def test_schema_inside_deep_fragments_is_refused(api: TestClient) -> None:
    """Fragments that each add a level of ofType: their depth adds up."""
    fragments = " ".join(
        f"fragment T{n} on __Type {{ kind ofType {{ ...T{n + 1} }} }}" for n in range(30)
    )
    query = "{ __schema { types { ...T0 } } } " + fragments + " fragment T30 on __Type { name }"
    started = time.perf_counter()
    body = gql(api, query)
    assert time.perf_counter() - started < 2
    assert error_codes(body) == ["QUERY_TOO_COMPLEX"]
