"""Real clients from the npm registry against a real ``lookalike serve``: Apollo Client with
its persisted-queries link, and apollo-upload-client.

The Node scripts in tests/clients/ (installed by ``npm ci`` there; .ci/run does it) log every
request their client made, so these tests check what went over the wire as well as what the
client got: Apollo's automatic persisted queries protocol and the multipart request spec as
Apollo's own code speaks them, not as we understood them.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer
from tests.paths import TESTS
from tests.photos import ORL

CLIENTS = TESTS / "clients"
NOT_FOUND = "PERSISTED_QUERY_NOT_FOUND"


def node(script: str, *args: str) -> dict[str, Any]:
    installed = CLIENTS / "node_modules" / "@apollo" / "client"
    assert installed.is_dir(), f"run `npm ci` in {CLIENTS} first (.ci/run does)"
    done = subprocess.run(
        ["node", script, *args], cwd=CLIENTS, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def sent(wire: list[dict[str, Any]]) -> list[tuple[str, bool, list[str]]]:
    """Each request as (method, carried the query text, error codes it got back)."""
    return [(w["method"], w["query"] is not None, w["codes"]) for w in wire]


def apq(live_server: LiveServer, mode: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A query no one has sent before (its alias is new), asked by Apollo Client."""
    out = node("apq.mjs", f"{live_server.url}/graphql", mode, uuid.uuid4().hex[:12])
    return out["results"], out["wire"]


def book(result: dict[str, Any]) -> dict[str, Any]:
    assert result["errors"] == []
    found: dict[str, Any] = result["data"]["book"]
    return found


def check_answers(results: dict[str, Any]) -> None:
    assert book(results["first"])["title"] == "Transformers: The Ultimate Guide"
    assert book(results["again"])["title"] == "It"
    assert book(results["fresh"])["id"] == "9"


def check_hash(wire: list[dict[str, Any]]) -> None:
    """One hash throughout, and it is the SHA-256 of the query text Apollo sent once."""
    (with_text,) = [w for w in wire if w["query"] is not None]
    assert {w["hash"] for w in wire} == {hashlib.sha256(with_text["query"].encode()).hexdigest()}


def test_apollo_persisted_queries_send_the_query_text_once(live_server: LiveServer) -> None:
    results, wire = apq(live_server, "post")
    check_answers(results)
    assert sent(wire) == [
        ("POST", False, [NOT_FOUND]),  # the hash alone: the server does not know it yet
        ("POST", True, []),  # Apollo sends the query with its hash; the server keeps it
        ("POST", False, []),  # the same query later: the hash alone is enough
        ("POST", False, []),  # and from a client that never sent the text
    ]
    check_hash(wire)


def test_apollo_persisted_queries_over_get_for_caches(live_server: LiveServer) -> None:
    """``useGETForHashedQueries``: a hashed query is a GET a CDN can cache; the text, when
    the server asks for it, goes by POST."""
    results, wire = apq(live_server, "get")
    check_answers(results)
    assert sent(wire) == [
        ("GET", False, [NOT_FOUND]),
        ("POST", True, []),
        ("GET", False, []),
        ("GET", False, []),
    ]
    assert all(w["status"] == 200 for w in wire[1:])
    check_hash(wire)


def test_a_hash_that_does_not_match_the_query_is_refused(live_server: LiveServer) -> None:
    """A client whose hash is not the query's SHA-256 (a bug, or a forged pairing): the
    server must not store the text under that hash, so it refuses it and runs nothing, as
    Apollo Server does (BAD_REQUEST, HTTP 400)."""
    results, wire = apq(live_server, "mismatch")
    assert results["first"]["data"] is None
    (error,) = results["first"]["errors"]
    assert error["code"] == "BAD_REQUEST"
    assert "SHA-256" in error["message"]
    assert sent(wire) == [("POST", False, [NOT_FOUND]), ("POST", True, ["BAD_REQUEST"])]
    assert wire[1]["status"] == 400
    # and the hash was not taken: asking by it alone still finds nothing
    retry = httpx.post(
        f"{live_server.url}/graphql",
        json={"extensions": {"persistedQuery": {"version": 1, "sha256Hash": "0" * 64}}},
    )
    assert retry.json()["errors"][0]["extensions"]["code"] == NOT_FOUND


@pytest.fixture(scope="module")
def uploads(live_server: LiveServer) -> dict[str, Any]:
    return node("upload.mjs", f"{live_server.url}/graphql", live_server.key, str(ORL))


def identified(answer: dict[str, Any]) -> tuple[str, int]:
    return answer["person"]["id"], answer["facesDetected"]


def test_apollo_upload_client_enrols_and_identifies_a_face(uploads: dict[str, Any]) -> None:
    results, wire = uploads["results"], uploads["wire"]
    assert results["enroll"] == {
        "data": {"enrollFace": {"__typename": "Person", "id": "apollo-s1", "faceCount": 1}},
        "errors": [],
    }
    assert results["identify"]["errors"] == []
    assert identified(results["identify"]["data"]["identifyFace"]) == ("apollo-s1", 1)
    assert wire[1]["map"] == {"1": ["variables.image"]}
    assert wire[1]["preflight"] == "true"


def test_apollo_upload_client_without_the_preflight_header_is_refused(
    uploads: dict[str, Any],
) -> None:
    """The CSRF guard: Apollo's upload link does not add the header by itself."""
    results, wire = uploads["results"], uploads["wire"]
    assert results["noPreflight"]["data"] is None
    assert [e["code"] for e in results["noPreflight"]["errors"]] == ["BAD_REQUEST"]
    assert (wire[2]["preflight"], wire[2]["status"]) == (None, 400)


def test_one_file_in_two_variables_is_read_for_both(uploads: dict[str, Any]) -> None:
    """Apollo's client sends a File used twice once and maps it to both variables; each
    field gets the whole photo (before, the second read an exhausted upload: INVALID_IMAGE)."""
    results, wire = uploads["results"], uploads["wire"]
    assert wire[3]["map"] == {"1": ["variables.a", "variables.b"]}
    assert wire[3]["files"] == ["1"]
    assert results["twice"]["errors"] == []
    data = results["twice"]["data"]
    assert identified(data["a"]) == identified(data["b"]) == ("apollo-s1", 1)
