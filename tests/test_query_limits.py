"""Queries too large to answer are refused in validation, before any Redis command."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from tests.conftest import error_codes, gql

NESTED_620 = """{ books(first: 20) { edges { node {
  similar(k: 5) { book { similar(k: 5) { book { title } } } } } } } }"""


def nested(k: int, levels: int) -> str:
    inner = "title"
    for _ in range(levels):
        inner = f"similar(k: {k}) {{ book {{ {inner} }} }}"
    return f'{{ book(id: "9") {{ {inner} }} }}'


def test_a_hundred_million_books_is_refused_with_cost_and_limit(api: TestClient) -> None:
    body = gql(api, nested(100, 4))
    assert body["data"] is None
    assert error_codes(body) == ["QUERY_TOO_COMPLEX"]
    extensions = body["errors"][0]["extensions"]
    assert extensions["cost"] == 100 + 100**2 + 100**3 + 100**4
    assert extensions["maxCost"] == 20_000
    assert body["extensions"]["cost"]["redisRoundTrips"] == 0


def test_the_cost_counts_variables_fragments_and_defaults(api: TestClient) -> None:
    query = """query($k: Int!) { book(id: "9") { ...Deep } }
      fragment Deep on Book { similar(k: $k) { book { similar { book { title } } } } }"""
    refused = gql(api, query, k=100)  # 100 + 100 * 5 (default k) = 600: fine
    assert "errors" not in refused
    too_big = gql(api, query.replace("similar { book", "similar(k: 100) { book"), k=300)
    assert error_codes(too_big) == ["QUERY_TOO_COMPLEX"]
    assert too_big["errors"][0]["extensions"]["cost"] == 300 + 300 * 100


def test_the_benchmark_query_is_well_within_the_limit(api: TestClient) -> None:
    assert "errors" not in gql(api, NESTED_620)


@pytest.mark.parametrize(("levels", "allowed"), [(3, True), (7, False)])
def test_depth_is_limited(api: TestClient, levels: int, allowed: bool) -> None:
    body = gql(api, nested(1, levels))
    if allowed:
        assert "errors" not in body
    else:
        assert error_codes(body) == ["QUERY_TOO_COMPLEX"]
        assert body["errors"][0]["extensions"]["maxDepth"] == 8
