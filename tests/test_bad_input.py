"""Every bad input is a GraphQL error with a code, and costs Redis nothing."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.conftest import error_codes, gql

BOOK = """query($k: Int!, $r: Float!, $first: Int!, $offset: Int!) {
  book(id: "9") { similar(k: $k) { distance }
    withinRadius(r: $r, first: $first, offset: $offset) { totalCount } }
  other: book(id: "0") { title } }"""
GOOD = {"k": 5, "r": 0.5, "first": 10, "offset": 0}


@pytest.mark.parametrize(
    ("argument", "value"),
    [
        ("k", 0),
        ("k", 101),
        ("k", 10_000),
        ("k", -3),
        ("r", -0.01),
        ("r", 2.01),
        ("r", 3),
        ("first", -1),
        ("first", 101),
        ("offset", -1),
        ("offset", 10_001),
    ],
)
def test_out_of_range_argument_is_bad_user_input(
    api: TestClient, argument: str, value: float
) -> None:
    body = gql(api, BOOK, **{**GOOD, argument: value})
    assert "BAD_USER_INPUT" in error_codes(body)
    error = next(e for e in body["errors"] if e["extensions"]["code"] == "BAD_USER_INPUT")
    assert error["extensions"]["argument"] == argument
    assert argument in error["message"]
    assert body["data"]["book"] is None  # the error nulls the nullable parent...
    assert body["data"]["other"] == {"title": "Engineward #2"}  # ...and nothing else


def test_bounds_themselves_are_accepted(api: TestClient) -> None:
    for variables in ({"k": 1, "r": 0.0}, {"k": 100, "r": 2.0, "first": 100, "offset": 10_000}):
        body = gql(api, BOOK, **{**GOOD, **variables})
        assert "errors" not in body, body


def test_a_rejected_argument_sends_nothing_to_redis(api: TestClient) -> None:
    body = gql(api, '{ book(id: "9") { similar(k: 0) { distance } } }')
    good = gql(api, '{ book(id: "9") { title } }')
    assert error_codes(body) == ["BAD_USER_INPUT"]
    # Only the book itself was read: the refused similar() added no round trip.
    assert body["extensions"]["cost"] == good["extensions"]["cost"]


def test_unknown_book_is_null_with_book_not_found(api: TestClient) -> None:
    body = gql(api, '{ book(id: "no-such-book") { title } other: book(id: "9") { id } }')
    assert body["data"] == {"book": None, "other": {"id": "9"}}
    assert error_codes(body) == ["BOOK_NOT_FOUND"]
    assert body["errors"][0]["path"] == ["book"]


@pytest.mark.parametrize(
    "after", ["zzz", "Ym9vazp4", "", "bm90LWEtYm9vazox", "Ym9vazox" + "=" * 3, "é"]
)
def test_malformed_cursor_is_bad_user_input(api: TestClient, after: str) -> None:
    body = gql(api, "query($after: String) { books(after: $after) { totalCount } }", after=after)
    assert error_codes(body) == ["BAD_USER_INPUT"]


@pytest.mark.parametrize(
    ("query", "variables", "code"),
    [
        ('{ book(id: "9" { title } }', {}, "GRAPHQL_PARSE_FAILED"),
        ('{ book(id: "9") { nope } }', {}, "GRAPHQL_VALIDATION_FAILED"),
        ('{ book(id: "9") { similar(k: "five") { distance } } }', {}, "GRAPHQL_VALIDATION_FAILED"),
        (
            'query($k: Int!) { book(id: "9") { similar(k: $k) { distance } } }',
            {"k": "five"},
            "BAD_USER_INPUT",
        ),
        ('query($k: Int!) { book(id: "9") { similar(k: $k) { distance } } }', {}, "BAD_USER_INPUT"),
    ],
)
def test_documents_that_do_not_fit_the_schema_get_a_code(
    api: TestClient, query: str, variables: dict[str, Any], code: str
) -> None:
    response = api.post("/graphql", json={"query": query, "variables": variables})
    assert response.status_code in (200, 400)
    assert error_codes(response.json()) == [code]
