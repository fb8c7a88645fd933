"""/graphql as the GraphQL-over-HTTP spec and Apollo's clients expect it, against the real app.

Each rule of the spec's status codes for ``application/graphql-response+json`` has a test, with
the ``application/json`` answer beside it (the classic 200 that older clients expect).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from starlette.testclient import TestClient

from lookalike.schema.app import create_app
from lookalike.schema.execution.executor import PlannedExecutor
from lookalike.services.core.settings import Settings
from tests.conftest import error_codes, from_address, metric_labels
from tests.photos import PREFLIGHT, orl

SPEC = "application/graphql-response+json"
MODERN = {"accept": f"{SPEC}, application/json;q=0.9"}  # what Apollo Client 4 sends
LEGACY = {"accept": "application/json"}
TITLE = '{ book(id: "9") { title } }'


def ask(
    api: TestClient, body: Any, headers: dict[str, str], **options: Any
) -> tuple[int, dict[str, Any], str]:
    response = api.post("/graphql", json=body, headers=headers, **options)
    return response.status_code, response.json(), response.headers["content-type"]


@pytest.mark.parametrize(
    ("body", "spec_status", "code"),
    [
        ({"query": "{ book(id: "}, 400, "GRAPHQL_PARSE_FAILED"),
        ({"query": '{ book(id: "9") { nope } }'}, 422, "GRAPHQL_VALIDATION_FAILED"),
        (
            {"query": "query($k: Int!) { books(first: $k) { totalCount } }", "variables": {}},
            422,
            "BAD_USER_INPUT",
        ),
        (
            {"query": "query A { genres { name } } query B { __typename }"},
            422,
            "OPERATION_RESOLUTION_FAILURE",
        ),
        ({"query": TITLE, "operationName": "Missing"}, 422, "OPERATION_RESOLUTION_FAILURE"),
    ],
)
def test_request_errors_have_no_data_and_the_spec_status(
    api: TestClient, body: dict[str, Any], spec_status: int, code: str
) -> None:
    status, answer, content_type = ask(api, body, MODERN)
    assert (status, error_codes(answer)) == (spec_status, [code])
    assert "data" not in answer
    assert content_type.startswith(SPEC)
    status, answer, content_type = ask(api, body, LEGACY)
    assert (status, error_codes(answer)) == (200, [code])
    assert "data" not in answer
    assert content_type.startswith("application/json")


def test_several_operations_run_the_one_named(api: TestClient) -> None:
    document = "query A { genres { name } } query B { __typename }"
    status, answer, _ = ask(api, {"query": document, "operationName": "B"}, MODERN)
    assert (status, answer["data"]) == (200, {"__typename": "Query"})


def test_data_with_errors_is_294_partial_success(api: TestClient) -> None:
    query = '{ nine: book(id: "9") { title } missing: book(id: "404404") { title } }'
    status, answer, _ = ask(api, {"query": query}, MODERN)
    assert status == 294
    assert answer["data"]["nine"]["title"]
    assert answer["data"]["missing"] is None
    assert error_codes(answer) == ["BOOK_NOT_FOUND"]
    assert ask(api, {"query": query}, LEGACY)[0] == 200


def test_a_refused_caller_is_401_or_403(api: TestClient) -> None:
    stranger = from_address(api, "203.0.113.9")
    query = {"query": 'mutation { deletePerson(id: "someone") }'}
    response = stranger.post("/graphql", json=query, headers=MODERN)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    wrong = {**MODERN, "authorization": "Bearer not-a-key"}
    assert stranger.post("/graphql", json=query, headers=wrong).status_code == 403
    assert stranger.post("/graphql", json=query, headers=LEGACY).status_code == 200


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, "application/json"),
        ("*/*", "application/json"),
        ("application/json", "application/json"),
        (SPEC, SPEC),
        (f"application/json;q=0.9, {SPEC}", SPEC),
        (f"{SPEC};q=0.5, application/json", "application/json"),
    ],
)
def test_the_answer_speaks_the_accepted_media_type(
    api: TestClient, accept: str | None, expected: str
) -> None:
    headers = {"accept": accept} if accept else {}
    request = api.build_request("POST", "/graphql", json={"query": TITLE}, headers=headers)
    if accept is None:
        request.headers.pop("accept")
    response = api.send(request)
    assert response.status_code == 200
    assert response.headers["content-type"] == f"{expected}; charset=utf-8"


def test_a_client_that_accepts_no_json_gets_406(api: TestClient) -> None:
    response = api.post("/graphql", json={"query": TITLE}, headers={"accept": "text/csv"})
    assert response.status_code == 406
    assert error_codes(response.json()) == ["NOT_ACCEPTABLE"]


def test_queries_work_over_get_and_mutations_do_not(api: TestClient) -> None:
    query = "query($id: ID!) { book(id: $id) { title } }"
    params = {"query": query, "variables": json.dumps({"id": "9"})}
    response = api.get("/graphql", params=params, headers=MODERN)
    assert response.status_code == 200
    assert response.json()["data"]["book"]["title"] == "Transformers: The Ultimate Guide"
    mutation = {"query": 'mutation { deletePerson(id: "someone") }'}
    refused = api.get("/graphql", params=mutation, headers=MODERN)
    assert refused.status_code == 405
    assert refused.headers["allow"] == "POST"
    assert error_codes(refused.json()) == ["METHOD_NOT_ALLOWED"]
    bad = api.get("/graphql", params={"query": query, "variables": "{nope"})
    assert (bad.status_code, error_codes(bad.json())) == (400, ["BAD_REQUEST"])


def _persisted(query: str) -> dict[str, Any]:
    digest = hashlib.sha256(query.encode()).hexdigest()
    return {"persistedQuery": {"version": 1, "sha256Hash": digest}}


def test_automatic_persisted_queries_over_post_and_get(api: TestClient, settings: Settings) -> None:
    query = 'query Apq { book(id: "15") { title } }'
    extensions = _persisted(query)
    first = api.post("/graphql", json={"extensions": extensions}, headers=MODERN)
    assert first.status_code == 200  # as Apollo Server answers: every Apollo link retries
    assert first.headers["cache-control"].startswith("private, no-cache")
    assert first.json()["errors"][0] == {
        "message": "PersistedQueryNotFound",
        "extensions": {"code": "PERSISTED_QUERY_NOT_FOUND"},
    }
    registered = api.post(
        "/graphql", json={"query": query, "extensions": extensions}, headers=MODERN
    )
    title = registered.json()["data"]["book"]["title"]
    # hash alone, over POST, then over GET (which a CDN can cache), then as another
    # process would see it (only Redis)
    again = api.post("/graphql", json={"extensions": extensions}, headers=MODERN)
    assert again.json()["data"]["book"]["title"] == title
    params = {"extensions": json.dumps(extensions)}
    assert api.get("/graphql", params=params).json()["data"]["book"]["title"] == title
    api.app.state.persisted_queries.local.clear()  # type: ignore[attr-defined]
    assert api.get("/graphql", params=params).json()["data"]["book"]["title"] == title
    stored = redis.Redis.from_url(settings.redis_url or "")
    buckets = list(stored.scan_iter(match="persisted-queries:*"))
    assert any(stored.hexists(b, extensions["persistedQuery"]["sha256Hash"]) for b in buckets)


def test_a_persisted_query_hash_that_does_not_match_is_refused(api: TestClient) -> None:
    extensions = _persisted("{ __typename }")
    body = {"query": TITLE, "extensions": extensions}
    response = api.post("/graphql", json=body, headers=MODERN)
    assert (response.status_code, error_codes(response.json())) == (400, ["BAD_REQUEST"])


def test_a_document_that_does_not_validate_is_never_persisted(api: TestClient) -> None:
    query = '{ book(id: "9") { notAField } }'
    extensions = _persisted(query)
    api.post("/graphql", json={"query": query, "extensions": extensions})
    again = api.post("/graphql", json={"extensions": extensions}).json()
    assert error_codes(again) == ["PERSISTED_QUERY_NOT_FOUND"]


@pytest.fixture(scope="module")
def closed(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """The session's deployment with introspection (and so suggestions) switched off."""
    folder: Path = tmp_path_factory.mktemp("closed")
    quiet = settings.model_copy(update={"introspection": False, "data_dir": folder})
    with TestClient(create_app(quiet)) as client:
        yield client


@pytest.mark.parametrize(
    ("query", "variables"),
    [
        ('{ book(id: "9") { titl } }', None),
        ('{ book(id: "9") { similar(kk: 3) { distance } } }', None),
        (
            'query($f: BookFilter) { searchBooks(text: "x", filter: $f) { distance } }',
            {"f": {"genre": ["horror"]}},
        ),
    ],
)
def test_without_introspection_errors_suggest_no_names(
    api: TestClient, closed: TestClient, query: str, variables: dict[str, Any] | None
) -> None:
    body = {"query": query, "variables": variables}
    assert "Did you mean" in json.dumps(api.post("/graphql", json=body).json())
    hidden = closed.post("/graphql", json=body).json()
    assert hidden["errors"]
    assert "Did you mean" not in json.dumps(hidden)


def test_one_file_mapped_to_two_variables_reaches_both(api: TestClient) -> None:
    query = """mutation($a: Upload!, $b: Upload!) {
      a: identifyFace(image: $a, k: 1) { facesDetected distance }
      b: identifyFace(image: $b, k: 1) { facesDetected distance } }"""
    operations = {"query": query, "variables": {"a": None, "b": None}}
    response = api.post(
        "/graphql",
        data={
            "operations": json.dumps(operations),
            "map": json.dumps({"0": ["variables.a", "variables.b"]}),
        },
        files={"0": ("photo.bmp", orl("s2", 7), "image/bmp")},
        headers=PREFLIGHT,
    )
    data = response.json()["data"]
    assert data["a"] == data["b"]
    assert data["a"]["facesDetected"] == 1


def test_errors_quote_only_a_prefix_of_what_was_sent(api: TestClient) -> None:
    huge = "7" * 900_000
    response = api.post("/graphql", json={"query": "query($id: ID!) { book(id: $id) { title } }",
                                           "variables": {"id": huge}})  # fmt: skip
    assert len(response.content) < 2000
    assert error_codes(response.json()) == ["BOOK_NOT_FOUND"]
    wrong_type = {"query": "query($k: Int!) { books(first: $k) { totalCount } }",
                  "variables": {"k": "x" * 500_000}}  # fmt: skip
    response = api.post("/graphql", json=wrong_type)
    assert len(response.content) < 2000
    assert error_codes(response.json()) == ["BAD_USER_INPUT"]


def test_two_content_types_are_refused_before_the_body_is_read(api: TestClient) -> None:
    big = json.dumps({"query": TITLE, "padding": "x" * (5 * 1024 * 1024)}).encode()
    for first, second in (("text/plain", "application/json"), ("application/json", "text/plain")):
        response = api.post(
            "/graphql", content=big, headers=[("content-type", first), ("content-type", second)]
        )
        assert (response.status_code, error_codes(response.json())) == (400, ["BAD_REQUEST"])


def test_an_operation_name_too_long_for_a_label_is_counted_as_other(api: TestClient) -> None:
    name = "Q" * 500_000
    api.post("/graphql", json={"query": f"query {name} {{ __typename }}", "operationName": name})
    metrics = api.get("/metrics")
    assert len(metrics.content) < 200_000
    labels = metric_labels(metrics.text, "lookalike_graphql_requests_total", "operation")
    assert all(len(label) <= 64 for label in labels)


def test_unknown_paths_and_methods_are_json_too(api: TestClient) -> None:
    assert error_codes(api.get("/nowhere").json()) == ["NOT_FOUND"]
    assert error_codes(api.post("/healthz").json()) == ["METHOD_NOT_ALLOWED"]
    response = api.get("/", follow_redirects=False)
    assert (response.status_code, response.headers["location"]) == (307, "/graphql")


@pytest.mark.parametrize("version", [True, 1.0, "1", 2])
def test_a_persisted_query_version_other_than_the_integer_1_is_not_supported(
    api: TestClient, version: object
) -> None:
    extensions = {"persistedQuery": {"version": version, "sha256Hash": "a" * 64}}
    body = api.post("/graphql", json={"extensions": extensions}).json()
    assert error_codes(body) == ["PERSISTED_QUERY_NOT_SUPPORTED"]


def test_the_persisted_store_bounds_documents_by_bytes(api: TestClient) -> None:
    """32 KB of text in four-byte characters is 128 KB: too large to store."""
    query = "#" + "\U0001f600" * 10_000 + "\n{ __typename }"
    extensions = _persisted(query)
    assert (
        "errors" not in api.post("/graphql", json={"query": query, "extensions": extensions}).json()
    )
    again = api.post("/graphql", json={"extensions": extensions}).json()
    assert error_codes(again) == ["PERSISTED_QUERY_NOT_FOUND"]


def test_a_bug_outside_any_resolver_is_a_coded_error_not_a_bare_500(
    api: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """graphql-core reports what resolvers raise; something raised around them (a bug in the
    executor) is still answered as JSON with INTERNAL_SERVER_ERROR, its text not shown."""

    def broken(self: PlannedExecutor, serially: bool | None = None) -> None:
        raise RuntimeError("the secret internals")

    monkeypatch.setattr(PlannedExecutor, "execute_operation", broken)
    status, body, _ = ask(api, {"query": '{ book(id: "9") { title } }'}, {})
    assert status == 200
    assert body.get("data") is None
    assert [e["extensions"]["code"] for e in body["errors"]] == ["INTERNAL_SERVER_ERROR"]
    assert "secret" not in json.dumps(body)
