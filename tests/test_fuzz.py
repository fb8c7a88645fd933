"""Generated GraphQL, valid and invalid, against the real server: no 5xx, every error coded.

Documents come from the schema itself (hypothesis-graphql): valid ones with arbitrary
arguments, invalid ones (wrong types, missing arguments, unknown fields), and plain garbage.
CI runs a fixed seed and a small count; a longer run:

    LOOKALIKE_FUZZ_EXAMPLES=5000 .venv/bin/python -m pytest tests/test_fuzz.py
"""

from __future__ import annotations

import os
from typing import Any

import graphql
import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from hypothesis_graphql import Mode, from_schema
from starlette.testclient import TestClient

from lookalike.schema.schema import sdl

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


def check(api: TestClient, payload: Any) -> None:
    response = api.post("/graphql", json=payload)
    assert response.status_code < 500, (payload, response.text)
    body = response.json()
    for error in body.get("errors", []):
        code = (error.get("extensions") or {}).get("code")
        assert code, (payload, error)
        assert code != "INTERNAL_SERVER_ERROR", (payload, error)


@seed(20261125)
@fuzzing
@given(query=from_schema(SCHEMA, custom_scalars=SCALARS, mode=Mode.POSITIVE))
def test_valid_documents_never_fail_the_server(api: TestClient, query: str) -> None:
    check(api, {"query": query})


@seed(20261125)
@fuzzing
@given(query=from_schema(SCHEMA, custom_scalars=SCALARS, mode=Mode.NEGATIVE))
def test_invalid_documents_get_coded_errors(api: TestClient, query: str) -> None:
    check(api, {"query": query})


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


@pytest.mark.parametrize("variables", [{"k": 2**63}, {"k": "5"}, {"k": None}, {}])
def test_variables_of_the_wrong_kind_are_bad_user_input(
    api: TestClient, variables: dict[str, Any]
) -> None:
    query = 'query($k: Int!) { book(id: "9") { similar(k: $k) { distance } } }'
    check(api, {"query": query, "variables": variables})


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
