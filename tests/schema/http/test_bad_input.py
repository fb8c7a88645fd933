"""Every bad input is a GraphQL error with a code, and costs Redis nothing."""

from __future__ import annotations

import json
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


# --- bytes no client should send --------------------------------------------------------------

JSON_TYPE = {"content-type": "application/json"}
TEXT = "query($t: String!) { searchBooks(text: $t, k: 1) { distance } }"
FILTERED = """query($f: BookFilter) { searchBooks(text: "ghosts", filter: $f) { distance } }"""


@pytest.mark.parametrize(
    "raw",
    [
        b"5",
        b"null",
        b'"a query in a string"',
        b"true",
        b"",
        b"[" * 50_000 + b"]" * 50_000,
        b'{"query": ' * 20_000 + b"1" + b"}" * 20_000,
        b'{"query": "{ __typename }"' + b"\xff\xfe\xfa" + b"}",
        '{"query": "{ __typename }", "x": "é"}'.encode("latin-1"),
        b'{"query": "{ book(id: \\"9\\") { title } }", "operationName": "\\ud800"}',
        b'{"query": "{ book(id: \\"\\udfff\\") { title } }"}',
        b'{"query": "query($t: String!) { __typename }", "variables": {"t": "\\ud83d"}}',
        b'{"query": "query($t: String!) { __typename }", "variables": {"\\udc00": 1}}',
        b'[{"query": "{ __typename }"}, {"query": "{ __typename }"}]',
        b'{"query": 5}',
        b'{"query": "{ __typename }", "variables": [7]}',
        b'{"query": "{ __typename }", "operationName": {"a": 1}}',
        b'{"query": "{ __typename }", "extensions": "yes"}',
        b'{"query": "query($g: [String!]) { __typename }", "variables": {"g": ['
        + b",".join(b'"g"' for _ in range(100_000))
        + b"]}}",
    ],
)
def test_a_body_that_is_not_a_graphql_request_gets_a_coded_4xx(api: TestClient, raw: bytes) -> None:
    response = api.post("/graphql", content=raw, headers=JSON_TYPE)
    assert 400 <= response.status_code < 500, response.text
    codes = error_codes(response.json())
    assert len(codes) == 1
    assert codes[0] in ("BAD_REQUEST", "QUERY_TOO_COMPLEX"), codes


def test_a_hundred_thousand_genres_are_refused_before_graphql_sees_them(api: TestClient) -> None:
    genres = ["horror"] * 100_000
    response = api.post(
        "/graphql", json={"query": FILTERED, "variables": {"f": {"genres": genres}}}
    )
    assert response.status_code == 400
    assert error_codes(response.json()) == ["QUERY_TOO_COMPLEX"]


@pytest.mark.parametrize(
    ("query", "variables"),
    [
        (TEXT, {"t": "robots\x00 in space"}),
        (TEXT, {"t": "\x07bell"}),
        (FILTERED, {"f": {"genres": ["horror\x00"]}}),
        (FILTERED, {"f": {"authors": ["\x1b[31mred"]}}),
        ('{ searchBooks(text: "nul \\u0000 inside", k: 1) { distance } }', {}),
    ],
)
def test_control_characters_in_text_never_reach_redis(
    api: TestClient, query: str, variables: dict[str, Any]
) -> None:
    body = gql(api, query, **variables)
    assert error_codes(body) == ["BAD_USER_INPUT"]
    assert body["extensions"]["cost"]["redisRoundTrips"] == 0


def test_an_id_that_cannot_be_a_book_is_not_looked_up(api: TestClient) -> None:
    body = gql(api, '{ book(id: "\\u0000x") { title } }')
    assert error_codes(body) == ["BOOK_NOT_FOUND"]
    assert body["extensions"]["cost"]["redisRoundTrips"] == 0


PREFLIGHT = {"Apollo-Require-Preflight": "true"}
UPLOAD_QUERY = "mutation($i: Upload!) { identifyFace(image: $i) { facesDetected } }"
GOOD_OPERATIONS = json.dumps({"query": UPLOAD_QUERY, "variables": {"i": None}})


@pytest.mark.parametrize(
    ("fields", "files"),
    [
        ({"operations": "{not json", "map": '{"0": ["variables.i"]}'}, 1),
        ({"operations": "[" + GOOD_OPERATIONS + "]", "map": '{"0": ["0.variables.i"]}'}, 1),
        ({"operations": "5", "map": '{"0": ["variables.i"]}'}, 1),
        ({"operations": GOOD_OPERATIONS, "map": '["variables.i"]'}, 1),
        ({"operations": GOOD_OPERATIONS, "map": '{"0": "variables.i"}'}, 1),
        ({"operations": GOOD_OPERATIONS, "map": '{"0": [5]}'}, 1),
        ({"operations": GOOD_OPERATIONS, "map": '{"7": ["variables.i"]}'}, 1),
        ({"operations": GOOD_OPERATIONS, "map": '{"0": ["query"]}'}, 1),
        ({"operations": GOOD_OPERATIONS, "map": '{"0": ["variables.nothere.x"]}'}, 1),
        ({"operations": GOOD_OPERATIONS, "map": '{"0": ["variables.i.deeper"]}'}, 1),
        ({"operations": GOOD_OPERATIONS}, 1),
        ({"map": '{"0": ["variables.i"]}'}, 1),
        ({"operations": GOOD_OPERATIONS, "map": '{"0": ["variables.i"]}'}, 1200),
    ],
)
def test_a_multipart_request_of_the_wrong_shape_gets_a_coded_400(
    api: TestClient, fields: dict[str, str], files: int
) -> None:
    parts = [(str(n), (f"f{n}.bin", b"x", "application/octet-stream")) for n in range(files)]
    response = api.post("/graphql", data=fields, files=parts, headers=PREFLIGHT)
    assert response.status_code == 400, response.text
    assert error_codes(response.json()) == ["BAD_REQUEST"]


@pytest.mark.parametrize(
    "query",
    [
        '{ book(id: "9") { similar(k: ' + "9" * 4301 + ") { distance } } }",
        "query($k: Int = " + "1" * 5000 + ') { book(id: "9") { similar(k: $k) { distance } } }',
        '{ searchBooks(text: "x", filter: { minRating: 1' + "0" * 200 + ".5 }) { distance } }",
    ],
)
def test_numbers_too_long_to_read_are_refused_not_crashed_on(api: TestClient, query: str) -> None:
    response = api.post("/graphql", json={"query": query})
    assert response.status_code == 200
    assert error_codes(response.json()) == ["GRAPHQL_VALIDATION_FAILED"]


def test_a_document_over_the_length_limit_is_refused_before_parsing(api: TestClient) -> None:
    query = "#" + "x" * 70_000 + "\n{ __typename }"
    body = api.post("/graphql", json={"query": query}).json()
    assert error_codes(body) == ["QUERY_TOO_COMPLEX"]
    assert body["errors"][0]["extensions"]["maxLength"] == 65536


@pytest.mark.parametrize(
    "raw",
    [
        '{"query": "{ __typename }"}'.encode("utf-16"),
        '{"query": "{ __typename }"}'.encode("utf-16-le"),
        b"\xef\xbb\xbf" + b'{"query": "{ __typename }"}',
    ],
)
def test_json_bodies_are_utf8_only(api: TestClient, raw: bytes) -> None:
    response = api.post("/graphql", content=raw, headers=JSON_TYPE)
    assert (response.status_code, error_codes(response.json())) == (400, ["BAD_REQUEST"])


@pytest.mark.parametrize("index", ["²", "٣", "0" * 5000, "-1"])
def test_a_map_index_that_is_not_a_list_index_is_refused(api: TestClient, index: str) -> None:
    operations = json.dumps({"query": UPLOAD_QUERY, "variables": {"i": [None]}})
    response = api.post(
        "/graphql",
        data={"operations": operations, "map": json.dumps({"0": [f"variables.i.{index}"]})},
        files=[("0", ("f.bin", b"x", "application/octet-stream"))],
        headers=PREFLIGHT,
    )
    assert (response.status_code, error_codes(response.json())) == (400, ["BAD_REQUEST"])


@pytest.mark.parametrize("value", ["_", "`", "_ ", "``", "`_", " _x", "a|b", "{}", "\\\\", '"'])
def test_any_printable_filter_value_is_a_value_not_syntax(api: TestClient, value: str) -> None:
    for name in ("authors", "genres"):
        body = gql(api, FILTERED, f={name: [value]})
        assert "errors" not in body, body
        assert body["data"]["searchBooks"] == []  # no book has such a genre or author


def test_filter_values_match_whole_stored_values_with_punctuation(api: TestClient) -> None:
    body = gql(api, FILTERED, f={"genres": ["paranormal (ghosts)"]})
    assert body["data"]["searchBooks"]


@pytest.mark.parametrize("text", ["\u200b\u200b", " \u2060 ", "\u00a0", "\u0085x"])
def test_a_search_text_without_letters_or_with_controls_is_refused(
    api: TestClient, text: str
) -> None:
    body = gql(api, TEXT, t=text)
    assert error_codes(body) == ["BAD_USER_INPUT"]
    assert body["extensions"]["cost"]["redisRoundTrips"] == 0


@pytest.mark.parametrize("person", ["s1}:x", "*", "\u0000", "p" * 100_000])
def test_an_id_that_cannot_be_a_person_is_not_looked_up(api: TestClient, person: str) -> None:
    body = gql(api, "query($id: ID!) { person(id: $id) { id } }", id=person)
    assert error_codes(body) == ["PERSON_NOT_FOUND"]
    assert body["extensions"]["cost"]["redisRoundTrips"] == 0
