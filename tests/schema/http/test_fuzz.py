"""Generated requests against the real server: no 5xx, every error coded.

Documents come from the schema itself (hypothesis-graphql): valid ones with arbitrary
arguments, invalid ones (wrong types, missing arguments, unknown fields). Below GraphQL, the
HTTP layer gets bytes no client should send: random bytes under every content type, JSON of
every shape (numbers, lists, nesting, lone surrogates, NUL), GraphQL requests whose fields have
the wrong types, and multipart bodies whose ``operations`` and ``map`` are anything at all.
CI runs a fixed seed and a small count; a longer run:

    LOOKALIKE_FUZZ_EXAMPLES=5000 .venv/bin/python -m pytest tests/schema/http/test_fuzz.py
"""

from __future__ import annotations

import json
import os
from typing import Any

import graphql
import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from hypothesis_graphql import Mode, from_schema
from starlette.testclient import TestClient

from lookalike.schema.execution.schema import sdl

EXAMPLES = int(os.environ.get("LOOKALIKE_FUZZ_EXAMPLES", "150"))
SCHEMA = sdl()
# A JSON request cannot carry a file: an Upload argument written inline is what a client
# without multipart would send.
SCALARS = {"Upload": st.just(graphql.StringValueNode(value="not a file"))}

fuzzing = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,  # the same documents every run, so a CI failure reproduces
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)


# The oracle for "is this a request a correct client could send": graphql-core's own parser,
# validation and variable coercion against the same schema, not the server's code.
REFERENCE = graphql.build_schema(SCHEMA)
LIMIT_CODES = {"QUERY_TOO_COMPLEX"}  # a valid document the server's limits refuse to run


def well_formed(payload: Any) -> bool:
    """A GraphQL request over JSON that the spec says must be executed: an object whose
    ``query`` is one valid operation and whose ``variables`` coerce to its definitions."""
    if not a_graphql_request(payload) or payload.get("operationName") is not None:
        return False
    variables = payload.get("variables")
    try:
        document = graphql.parse(payload["query"])
    except graphql.GraphQLError:
        return False
    operations = [d for d in document.definitions if isinstance(d, graphql.OperationDefinitionNode)]
    if graphql.validate(REFERENCE, document) or len(operations) != 1:
        return False
    coerced = graphql.get_variable_values(
        REFERENCE, operations[0].variable_definitions or (), variables or {}
    )
    return not isinstance(coerced, list)  # a list of errors: the variables do not fit


def a_graphql_request(payload: Any) -> bool:
    """A body the GraphQL-over-HTTP spec calls a well-formed request, whatever its document."""
    if not isinstance(payload, dict) or not isinstance(payload.get("query"), str):
        return False
    return all(
        payload.get(name) is None or isinstance(payload.get(name), kind)
        for name, kind in (("variables", dict), ("operationName", str), ("extensions", dict))
    )


def check(api: TestClient, payload: Any) -> None:
    """JSON bodies: executed when well formed, refused with coded errors otherwise."""
    response = api.post("/graphql", json=payload)
    if well_formed(payload):
        answered(response, payload)
    else:
        refused(response, payload)


def codes(response: Any, sent: Any) -> list[str]:
    """Every error's code (each must have one, and none a bug's), from a JSON body."""
    assert response.status_code < 500, (sent, response.text)
    body = response.json()
    found = []
    for error in body.get("errors", []):
        code = (error.get("extensions") or {}).get("code")
        assert code, (sent, error)
        assert code != "INTERNAL_SERVER_ERROR", (sent, error)
        found.append(code)
    return found


def answered(response: Any, sent: Any) -> None:
    """A request the spec says must run: HTTP 200 and ``data``, unless a limit refused it."""
    found = codes(response, sent)
    assert response.status_code == 200, (sent, response.text)
    assert "data" in response.json() or (found and set(found) <= LIMIT_CODES), (sent, found)


def refused(response: Any, sent: Any, status: range = range(200, 500)) -> list[str]:
    """A request that must not run: coded errors, no ``data``, a status in ``status``."""
    found = codes(response, sent)
    assert found, (sent, response.status_code, response.text)
    assert "data" not in response.json(), (sent, response.text)
    assert response.status_code in status, (sent, response.status_code, response.text)
    return found


CLIENT_ERROR = range(400, 500)


@seed(20261125)
@fuzzing
@given(query=from_schema(SCHEMA, custom_scalars=SCALARS, mode=Mode.POSITIVE))
def test_valid_documents_never_fail_the_server(api: TestClient, query: str) -> None:
    check(api, {"query": query})


@seed(20261125)
@fuzzing
@given(query=from_schema(SCHEMA, custom_scalars=SCALARS, mode=Mode.NEGATIVE))
def test_invalid_documents_get_coded_errors(api: TestClient, query: str) -> None:
    response = api.post("/graphql", json={"query": query})
    if graphql.validate(REFERENCE, graphql.parse(query)):
        assert "GRAPHQL_VALIDATION_FAILED" in refused(response, query)
    else:  # the generator made a valid document after all
        answered(response, query)


@seed(20261125)
@fuzzing
@given(
    payload=st.one_of(
        st.fixed_dictionaries({"query": st.text(max_size=200)}),
        st.fixed_dictionaries(
            {"query": st.just('query($k: Int!) { book(id: "9") { similar(k: $k) { distance } } }')},
            optional={"variables": st.dictionaries(st.text(max_size=5), st.integers() | st.text())},
        ),
        st.dictionaries(st.text(max_size=10), st.integers() | st.text() | st.none()),
        st.lists(st.integers(), max_size=3),
    )
)
def test_garbage_bodies_get_coded_errors(api: TestClient, payload: Any) -> None:
    check(api, payload)


# JSON of every shape, with the text a careless or hostile client produces: NUL and other
# control characters, lone surrogates, very long strings.
nasty_text = st.text(
    alphabet=st.characters(codec=None, exclude_categories=()), max_size=40
) | st.sampled_from(["\x00", "\ud800", "\udfff", "a" * 5000, "\u202e", "{", "$k"])
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | nasty_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(nasty_text, inner, max_size=4),
    max_leaves=12,
)
QUERIES = [
    '{ book(id: "9") { title } }',
    'query($k: Int!) { book(id: "9") { similar(k: $k) { distance } } }',
    "query($t: String!, $f: BookFilter) { searchBooks(text: $t, filter: $f) { distance } }",
    "query($a: String) { books(after: $a) { totalCount } }",
]


def _encode(value: Any) -> bytes:
    return json.dumps(value).encode("utf-8", "surrogatepass")


@seed(20261126)
@fuzzing
@given(
    raw=st.binary(max_size=300)
    | json_values.map(_encode)
    | st.fixed_dictionaries(
        {"query": st.sampled_from(QUERIES) | json_values},
        optional={
            "variables": json_values,
            "operationName": json_values,
            "extensions": json_values,
        },
    ).map(_encode),
    content_type=st.sampled_from(
        [
            "application/json",
            "application/json; charset=utf-8",
            "application/json; charset=latin-1",
            "application/graphql",
            "text/plain",
            "application/x-www-form-urlencoded",
            "",
        ]
    ),
    accept=st.sampled_from(["application/json", "application/graphql-response+json", "*/*", ""]),
)
def test_bytes_no_client_should_send_get_coded_4xx(
    api: TestClient, raw: bytes, content_type: str, accept: str
) -> None:
    headers = {"content-type": content_type, "accept": accept}
    response = api.post("/graphql", content=raw, headers=headers)
    media_type, _, charset = content_type.partition(";")
    try:
        payload = json.loads(raw.decode("utf-8"))
    except ValueError:  # not UTF-8, or not JSON
        payload = None
    if (
        media_type == "application/json"
        and charset.strip() in ("", "charset=utf-8")
        and well_formed(payload)
    ):
        answered(response, (raw, headers))  # by chance, a request a correct client sends
    elif (
        media_type == "application/json"
        and charset.strip() in ("", "charset=utf-8")
        and a_graphql_request(payload)
        and accept != "application/graphql-response+json"
    ):
        # a GraphQL-over-HTTP request whose document fails: under application/json the
        # spec's status is 200 for a request error, so only its coded errors are checked
        refused(response, (raw, headers))
    else:
        refused(response, (raw, headers), CLIENT_ERROR)


@seed(20261126)
@fuzzing
@given(
    operations=st.text(max_size=60) | json_values.map(lambda v: json.dumps(v)),
    mapping=st.text(max_size=60)
    | json_values.map(lambda v: json.dumps(v))
    | st.dictionaries(
        st.sampled_from(["0", "1", "x"]),
        st.lists(st.sampled_from(["variables.image", "variables", "query", "variables.0.a"])),
    ).map(json.dumps),
    files=st.integers(0, 3),
)
def test_multipart_bodies_of_any_shape_get_coded_4xx(
    api: TestClient, operations: str, mapping: str, files: int
) -> None:
    parts = [(str(n), (f"f{n}", b"\xff\xd8 not an image", "image/jpeg")) for n in range(files)]
    response = api.post(
        "/graphql",
        data={"operations": operations, "map": mapping},
        files=parts or None,
        headers={"Apollo-Require-Preflight": "true"},
    )
    refused(response, (operations, mapping, files), CLIENT_ERROR)


@pytest.mark.parametrize("variables", [{"k": 2**63}, {"k": "5"}, {"k": None}, {}])
def test_variables_of_the_wrong_kind_are_bad_user_input(
    api: TestClient, variables: dict[str, Any]
) -> None:
    query = 'query($k: Int!) { book(id: "9") { similar(k: $k) { distance } } }'
    response = api.post("/graphql", json={"query": query, "variables": variables})
    assert refused(response, variables) == ["BAD_USER_INPUT"]


@pytest.mark.parametrize(
    ("method", "kwargs", "status", "code"),
    [
        ("post", {"json": {"variables": {}}}, 400, "BAD_REQUEST"),  # no query
        (
            "post",
            {"content": b"{not json", "headers": {"content-type": "application/json"}},
            400,
            "BAD_REQUEST",
        ),
        (
            "post",
            {"content": b"query", "headers": {"content-type": "text/plain"}},
            415,
            "UNSUPPORTED_MEDIA_TYPE",
        ),
        ("put", {"json": {"query": "{ genres { name } }"}}, 405, "METHOD_NOT_ALLOWED"),
        (
            "get",
            {"params": {"query": 'mutation { deletePerson(id: "x") }'}},
            405,
            "METHOD_NOT_ALLOWED",
        ),
    ],
)
def test_requests_that_are_not_graphql_get_coded_json_errors(
    api: TestClient, method: str, kwargs: dict[str, Any], status: int, code: str
) -> None:
    response = api.request(method.upper(), "/graphql", **kwargs)
    assert response.status_code == status, response.text
    assert [e["extensions"]["code"] for e in response.json()["errors"]] == [code]
