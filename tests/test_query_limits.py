"""Requests too large to answer are refused before any Redis command; slow ones time out."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from lookalike.schema.app import create_app
from lookalike.services.settings import Settings
from tests.conftest import API_KEY, error_codes, gql, metric
from tests.photos import IDENTIFY, PREFLIGHT, orl, send

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


def test_aliases_are_limited(api: TestClient) -> None:
    def aliased(count: int) -> str:
        return "{ " + " ".join(f'b{i}: book(id: "9") {{ title }}' for i in range(count)) + " }"

    assert "errors" not in gql(api, aliased(30))
    body = gql(api, aliased(31))
    assert body["data"] is None
    assert error_codes(body) == ["QUERY_TOO_COMPLEX"]
    assert body["errors"][0]["extensions"].items() >= {"aliases": 31, "maxAliases": 30}.items()
    assert body["extensions"]["cost"]["redisRoundTrips"] == 0


def test_tokens_are_limited_before_the_document_is_parsed(api: TestClient) -> None:
    # 2,000 tokens fit in well under the 1 MB body limit: the token limit is what stops it.
    padding = " ".join(["title"] * 2000)
    body = gql(api, f'{{ book(id: "9") {{ {padding} }} }}')
    assert body["data"] is None
    assert error_codes(body) == ["QUERY_TOO_COMPLEX"]
    assert body["errors"][0]["extensions"]["maxTokens"] == 2000
    assert "errors" not in gql(api, f'{{ book(id: "9") {{ {" ".join(["title"] * 500)} }} }}')


def test_a_json_body_over_the_limit_is_refused_with_413(api: TestClient) -> None:
    query = '{ book(id: "9") { title } }' + " " * (1024 * 1024)
    response = api.post("/graphql", json={"query": query})
    assert response.status_code == 413
    assert error_codes(response.json()) == ["PAYLOAD_TOO_LARGE"]


@pytest.fixture(scope="module")
def hasty(settings: Settings) -> Iterator[TestClient]:
    """The session's deployment with a 0.5 s deadline: a book query takes a few ms, a photo
    in a stopped face worker forever."""
    hasty = settings.model_copy(update={"request_timeout": 0.5})
    headers = {"Authorization": f"Bearer {API_KEY}"}
    with TestClient(create_app(hasty), headers=headers) as client:
        yield client


def test_a_request_over_the_deadline_gets_504_timeout_and_the_server_goes_on(
    hasty: TestClient,
) -> None:
    # A photo that takes forever: the face worker is stopped (SIGSTOP), as if stuck in the
    # model. Photos are no longer slow by size: detection runs on a reduced copy.
    (worker,) = hasty.app.state.faces.embedder.pids()  # type: ignore[attr-defined]
    os.kill(worker, signal.SIGSTOP)
    response = send(hasty, IDENTIFY, orl("s1", 1), headers=PREFLIGHT, k=1)
    assert response.status_code == 504
    assert error_codes(response.json()) == ["TIMEOUT"]
    assert response.json()["errors"][0]["extensions"]["timeoutSeconds"] == 0.5
    assert gql(hasty, '{ book(id: "9") { title } }')["data"]["book"]["title"]
    metrics = hasty.get("/metrics").text
    assert metric(metrics, "lookalike_graphql_errors_total", code="TIMEOUT", operation="http") == 1
