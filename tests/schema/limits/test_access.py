"""API keys for changes (and for queries when asked), loopback-only changes without keys,
introspection and GraphiQL switches, CORS origins."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError
from starlette.testclient import TestClient

from lookalike.schema.app import create_app
from lookalike.services.core.settings import Settings
from tests.conftest import API_KEY, error_codes, from_address, gql, redis_dump
from tests.photos import ENROLL, PREFLIGHT, orl, send

DELETE = 'mutation { deletePerson(id: "nobody") }'
TITLE = '{ book(id: "9") { title } }'
BOOK_9 = {"book": {"title": "Transformers: The Ultimate Guide"}}
INTROSPECTION = "{ __schema { queryType { name } } }"
OTHER_KEY = "second-key-for-a-second-client"
ORIGIN = "https://books.example"


def post(api: TestClient, query: str, authorization: str | None) -> dict[str, Any]:
    """POST a query with this Authorization header, or none at all (the session client
    sends the right key by default)."""
    request = api.build_request("POST", "/graphql", json={"query": query})
    request.headers.pop("authorization", None)
    if authorization is not None:
        request.headers["authorization"] = authorization
    response = api.send(request)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.mark.parametrize(
    ("authorization", "code"),
    [
        (None, "UNAUTHENTICATED"),
        ("", "UNAUTHENTICATED"),
        (f"Basic {API_KEY}", "UNAUTHENTICATED"),
        ("Bearer ", "UNAUTHENTICATED"),
        ("Bearer not-the-key", "FORBIDDEN"),
        (f"Bearer {API_KEY}x", "FORBIDDEN"),
    ],
)
def test_a_mutation_without_a_valid_key_is_refused_and_writes_nothing(
    api: TestClient, settings: Settings, authorization: str | None, code: str
) -> None:
    before = redis_dump(settings.redis_url or "", "face*")
    client = from_address(api, "testclient")
    headers = {
        **PREFLIGHT,
        **({"Authorization": authorization} if authorization is not None else {}),
    }
    body = send(client, ENROLL, orl("s1", 1), headers=headers, id="intruder").json()
    assert "data" not in body  # a request error: nothing ran
    assert error_codes(body) == [code]
    assert body["extensions"]["cost"]["redisRoundTrips"] == 0
    assert redis_dump(settings.redis_url or "", "face*") == before


def test_the_right_key_is_accepted_in_any_case_of_bearer(api: TestClient) -> None:
    for scheme in ("Bearer", "bearer", "BEARER"):
        assert post(api, DELETE, f"{scheme} {API_KEY}")["data"] == {"deletePerson": False}


def test_queries_stay_open_without_a_key(api: TestClient) -> None:
    assert post(api, TITLE, None)["data"] == BOOK_9


def test_keys_never_reach_the_log(api: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        post(api, DELETE, f"Bearer {API_KEY}")
        post(api, DELETE, "Bearer a-wrong-key-to-look-for")
    assert caplog.records, "the request log line is missing"
    assert API_KEY not in caplog.text
    assert "a-wrong-key-to-look-for" not in caplog.text


def test_introspection_is_on_by_default(api: TestClient) -> None:
    assert gql(api, INTROSPECTION)["data"] == {"__schema": {"queryType": {"name": "Query"}}}


def test_keys_and_origins_are_read_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOKALIKE_API_KEYS", " first-key , second-key,,")
    monkeypatch.setenv("LOOKALIKE_CORS_ORIGINS", "https://a.example,https://b.example")
    configured = Settings()
    assert [k.get_secret_value() for k in configured.api_keys] == ["first-key", "second-key"]
    assert "first-key" not in repr(configured)
    assert configured.cors_origins == ["https://a.example", "https://b.example"]


def test_keys_for_queries_need_keys() -> None:
    with pytest.raises(ValidationError, match="LOOKALIKE_IDENTIFY_KEYS are empty"):
        Settings(require_key_for_queries=True)


@pytest.fixture(scope="module")
def locked(settings: Settings) -> Iterator[TestClient]:
    """A deployment that shows nothing to strangers: keys for queries too, no introspection,
    no GraphiQL, one browser origin."""
    locked = settings.model_copy(
        update={
            "api_keys": [SecretStr(API_KEY), SecretStr(OTHER_KEY)],
            "require_key_for_queries": True,
            "introspection": False,
            "graphiql": False,
            "cors_origins": [ORIGIN],
        }
    )
    with TestClient(create_app(locked)) as client:
        yield client


def test_keys_for_queries_refuse_a_query_without_one(locked: TestClient) -> None:
    assert error_codes(post(locked, TITLE, None)) == ["UNAUTHENTICATED"]
    assert error_codes(post(locked, TITLE, "Bearer guess")) == ["FORBIDDEN"]
    assert post(locked, TITLE, f"Bearer {OTHER_KEY}")["data"] == BOOK_9


def test_introspection_can_be_switched_off(locked: TestClient) -> None:
    body = post(locked, INTROSPECTION, f"Bearer {API_KEY}")
    assert "data" not in body  # a request error: nothing ran
    assert set(error_codes(body)) == {"GRAPHQL_VALIDATION_FAILED"}
    assert "introspection" in str(body["errors"]).lower()


def test_graphiql_can_be_switched_off(api: TestClient, locked: TestClient) -> None:
    html = {"Accept": "text/html"}
    assert "graphiql" in api.get("/graphql", headers=html).text.lower()
    assert locked.get("/graphql", headers=html).status_code == 404


def test_cors_allows_only_the_configured_origins(api: TestClient, locked: TestClient) -> None:
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    allowed = locked.options("/graphql", headers={**preflight, "Origin": ORIGIN})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == ORIGIN
    assert "authorization" in allowed.headers["access-control-allow-headers"].lower()
    other = locked.options("/graphql", headers={**preflight, "Origin": "https://evil.example"})
    assert other.status_code == 400
    assert "access-control-allow-origin" not in other.headers
    assert error_codes(other.json()) == ["CORS_REFUSED"]  # JSON with a code, like every error
    odd_header = {**preflight, "Access-Control-Request-Headers": "x-not-allowed"}
    refused = locked.options("/graphql", headers={**odd_header, "Origin": ORIGIN})
    assert (refused.status_code, error_codes(refused.json())) == (400, ["CORS_REFUSED"])
    # By default no origin is allowed: a browser page elsewhere cannot read any answer.
    default = api.post("/graphql", json={"query": TITLE}, headers={"Origin": ORIGIN})
    assert "access-control-allow-origin" not in default.headers


@pytest.fixture(scope="module")
def keyless(settings: Settings) -> Iterator[TestClient]:
    """No keys configured, as on a laptop: this client connects from 127.0.0.1."""
    keyless = settings.model_copy(update={"api_keys": []})
    with TestClient(create_app(keyless), client=("127.0.0.1", 50000)) as client:
        yield client


def test_without_keys_changes_come_only_from_loopback(keyless: TestClient) -> None:
    assert post(keyless, DELETE, None)["data"] == {"deletePerson": False}
    for address in ("::1", "127.0.0.2", "::ffff:127.0.0.1"):
        local = from_address(keyless, address)
        assert post(local, DELETE, None)["data"] == {"deletePerson": False}
    for address in ("10.1.2.3", "203.0.113.9", "::ffff:203.0.113.9", "testclient"):
        remote = from_address(keyless, address)
        body = post(remote, DELETE, None)
        assert "data" not in body  # a request error: nothing ran
        assert error_codes(body) == ["FORBIDDEN"]
        assert "LOOKALIKE_API_KEYS" in str(body["errors"])
        # ... while queries stay open to everyone
        assert "errors" not in post(remote, TITLE, None)
