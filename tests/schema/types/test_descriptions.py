"""GraphiQL's docs pane is where a frontend developer learns the API: every element of the
schema carries a description, read from the introspection a client sends."""

from __future__ import annotations

from typing import Any

from graphql import get_introspection_query
from starlette.testclient import TestClient

from tests.conftest import gql

# The spec's scalars, described by the spec itself (graphql-core leaves some without one)
BUILT_IN_SCALARS = {"String", "Int", "Float", "Boolean", "ID"}


def undescribed(types: list[dict[str, Any]]) -> list[str]:
    """Every type, field, argument, input field and enum value without a description, by its
    coordinate (``Type``, ``Type.field``, ``Type.field(argument:)``, ``Enum.VALUE``)."""
    missing: list[str] = []

    def check(element: dict[str, Any], coordinate: str) -> None:
        if not (element.get("description") or "").strip():
            missing.append(coordinate)

    for kind in types:
        name = kind["name"]
        if name.startswith("__") or name in BUILT_IN_SCALARS:
            continue  # introspection's own types and the built-in scalars
        check(kind, name)
        for field in kind.get("fields") or []:
            check(field, f"{name}.{field['name']}")
            for argument in field["args"]:
                check(argument, f"{name}.{field['name']}({argument['name']}:)")
        for field in kind.get("inputFields") or []:
            check(field, f"{name}.{field['name']}")
        for value in kind.get("enumValues") or []:
            check(value, f"{name}.{value['name']}")
    return missing


def test_every_schema_element_has_a_description(api: TestClient) -> None:
    query = get_introspection_query(descriptions=True, input_value_deprecation=True)
    body = gql(api, query)
    assert "errors" not in body, body
    schema = body["data"]["__schema"]
    names = {kind["name"] for kind in schema["types"]}
    assert {"Query", "Mutation", "Book", "BookFilter", "SearchMode"} <= names  # the walk sees them
    missing = undescribed(schema["types"])
    assert missing == [], f"{len(missing)} schema elements have no description: {missing}"
