"""Trusted documents against a real ``lookalike serve`` (LOOKALIKE_TRUSTED_DOCUMENTS): without a
full key only the manifest's operations run, however they are named (Apollo's sha256Hash, the
GraphQL-over-HTTP documentId, their text); anything else is PERSISTED_QUERY_NOT_IN_LIST before
it is parsed; automatic persisted queries register nothing past the list; a full key runs
anything; SIGHUP reloads the file, and a broken file stops the start or is ignored on reload.
Apollo Client's own persisted query list setup, with a manifest its generator made, is in
test_trusted_documents_apollo."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from lookalike.services.core.settings import Settings
from tests.paths import TESTS
from tests.servers import Served, serving, start_server

FULL_KEY = "trusted-full-key-0123456789"
IDENTIFY_KEY = "trusted-identify-key-0123456789"
BOOK = "query Book($id: ID!) { book(id: $id) { id title } }"
SIMILAR = "query Similar($id: ID!) { book(id: $id) { similar(k: 2) { book { id } } } }"
LATER = 'query Later { book(id: "9") { author } }'
UNLISTED = '{ book(id: "9") { title description } }'
NOT_IN_LIST = "PERSISTED_QUERY_NOT_IN_LIST"
CLIENTS = TESTS / "clients"
NOT_RELOADED = "trusted documents not reloaded"


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def apollo_manifest(*bodies: str) -> dict[str, Any]:
    return {
        "format": "apollo-persisted-query-manifest",
        "version": 1,
        "operations": [
            {"id": sha256(body), "name": body.split()[1], "type": "query", "body": body}
            for body in bodies
        ],
    }


@dataclass(frozen=True)
class Trusted:
    served: Served
    manifest: Path

    def write(self, content: Any) -> None:
        text = content if isinstance(content, str) else json.dumps(content)
        self.manifest.write_text(text, encoding="utf-8")

    def reload(self) -> None:
        self.served.process.send_signal(signal.SIGHUP)


@pytest.fixture(scope="module")
def environment(settings: Settings) -> Iterator[dict[str, str]]:
    """The session's Redis, a book index of this module's own."""
    name = f"trusted{uuid.uuid4().hex[:8]}"
    yield {
        "REDIS_URL": settings.redis_url or "",
        "LOOKALIKE_INDEX_NAME": name,
        "LOOKALIKE_KEY_PREFIX": name,
        "LOOKALIKE_REDIS_TIMEOUT": "10",
        "LOOKALIKE_API_KEYS": FULL_KEY,
        "LOOKALIKE_IDENTIFY_KEYS": IDENTIFY_KEY,
    }
    client = redis.Redis.from_url(settings.redis_url or "")
    client.ft(name).dropindex(delete_documents=True)
    client.close()


@pytest.fixture(scope="module")
def trusted(
    environment: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Trusted]:
    folder = tmp_path_factory.mktemp("trusted")
    manifest = folder / "persisted-query-manifest.json"
    manifest.write_text(json.dumps(apollo_manifest(BOOK, SIMILAR)), encoding="utf-8")
    with serving(
        folder / "serve.log",
        **environment,
        LOOKALIKE_DATA_DIR=str(folder / "data"),
        LOOKALIKE_TRUSTED_DOCUMENTS=str(manifest),
    ) as served:
        yield Trusted(served, manifest)


@pytest.fixture
def restored(trusted: Trusted) -> Iterator[Trusted]:
    """The module's server, its manifest put back as it was after the test."""
    before = trusted.manifest.read_text(encoding="utf-8")
    yield trusted
    trusted.write(before)
    trusted.reload()
    until(lambda: post(trusted, documentId=f"sha256:{sha256(BOOK)}", variables={"id": "9"}).ok)


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]

    @property
    def codes(self) -> list[str]:
        return [e["extensions"]["code"] for e in self.body.get("errors", [])]

    @property
    def ok(self) -> bool:
        return self.status == 200 and "errors" not in self.body and bool(self.body.get("data"))


def post(trusted: Trusted, key: str | None = None, **body: Any) -> Answer:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    response = httpx.post(f"{trusted.served.base}/graphql", json=body, headers=headers, timeout=30)
    return Answer(response.status_code, response.json())


def get(trusted: Trusted, **params: str) -> Answer:
    response = httpx.get(f"{trusted.served.base}/graphql", params=params, timeout=30)
    return Answer(response.status_code, response.json())


def apq(digest: str) -> dict[str, Any]:
    return {"persistedQuery": {"version": 1, "sha256Hash": digest}}


def until(check: Any, timeout: float = 10) -> None:
    """A signal is handled as the server's loop gets to it: wait for what it changes."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "the server did not change within the time"
        time.sleep(0.05)


def refused_unlisted(answer: Answer) -> None:
    assert answer.codes == [NOT_IN_LIST], answer.body
    assert answer.body.get("data") is None
    assert answer.body["extensions"]["cost"]["redisRoundTrips"] == 0  # nothing ran


def test_a_listed_document_runs_by_its_apollo_hash(trusted: Trusted) -> None:
    answer = post(trusted, extensions=apq(sha256(BOOK)), variables={"id": "9"})
    assert answer.ok, answer.body
    assert answer.body["data"]["book"]["title"] == "Transformers: The Ultimate Guide"
    over_get = get(
        trusted,
        extensions=json.dumps(apq(sha256(SIMILAR))),
        variables=json.dumps({"id": "9"}),
    )
    assert over_get.ok, over_get.body
    assert len(over_get.body["data"]["book"]["similar"]) == 2


def test_a_listed_document_runs_by_its_document_id(trusted: Trusted) -> None:
    answer = post(trusted, documentId=f"sha256:{sha256(BOOK)}", variables={"id": "26415"})
    assert answer.ok, answer.body
    assert answer.body["data"]["book"]["title"] == "It"
    over_get = get(trusted, documentId=f"sha256:{sha256(BOOK)}", variables='{"id": "9"}')
    assert over_get.ok, over_get.body


def test_a_listed_document_runs_with_its_text(trusted: Trusted) -> None:
    by_hash = post(trusted, query=BOOK, extensions=apq(sha256(BOOK)), variables={"id": "9"})
    by_id = post(trusted, query=BOOK, documentId=f"sha256:{sha256(BOOK)}", variables={"id": "9"})
    text_alone = post(trusted, query=BOOK, variables={"id": "9"})
    assert by_hash.ok, by_hash.body
    assert by_id.ok, by_id.body
    assert text_alone.ok, text_alone.body


def test_a_text_that_does_not_hash_to_the_id_is_refused(trusted: Trusted) -> None:
    """A listed id with another text: the text would run under the listed name."""
    for named in (
        {"extensions": apq(sha256(BOOK))},
        {"documentId": f"sha256:{sha256(BOOK)}"},
    ):
        answer = post(trusted, query=UNLISTED, **named)
        assert answer.status == 400, answer.body
        assert answer.codes == ["BAD_REQUEST"]
        assert "SHA-256" in answer.body["errors"][0]["message"]
        # not even a full key may pair them
        assert post(trusted, FULL_KEY, query=UNLISTED, **named).codes == ["BAD_REQUEST"]


def test_an_unlisted_document_is_refused_before_it_is_parsed(trusted: Trusted) -> None:
    refused_unlisted(post(trusted, query=UNLISTED))
    refused_unlisted(post(trusted, query="{ book(id: "))  # broken: not a parse error
    refused_unlisted(post(trusted, query="{ " * 5000))  # past the token limit: unread
    refused_unlisted(post(trusted, extensions=apq(sha256(UNLISTED))))
    refused_unlisted(post(trusted, documentId=f"sha256:{sha256(UNLISTED)}"))
    refused_unlisted(get(trusted, query=UNLISTED))
    # an identify key is the app's, not the team's: it runs only the list too
    refused_unlisted(post(trusted, IDENTIFY_KEY, query=UNLISTED))
    # a documentId that is not a SHA-256 is a malformed request
    assert post(trusted, documentId="md5:abc").codes == ["BAD_REQUEST"]


def test_automatic_persisted_queries_register_nothing_past_the_list(trusted: Trusted) -> None:
    """APQ's registration (hash and text together) of an unlisted document is refused, and
    one registered by a full key is still not run by its hash for anyone else."""
    text = '{ book(id: "9") { title author } }'
    refused_unlisted(post(trusted, query=text, extensions=apq(sha256(text))))
    refused_unlisted(post(trusted, extensions=apq(sha256(text))))
    team = post(trusted, FULL_KEY, query=text, extensions=apq(sha256(text)))
    assert team.ok, team.body
    assert post(trusted, FULL_KEY, extensions=apq(sha256(text))).ok  # stored, for the team
    refused_unlisted(post(trusted, extensions=apq(sha256(text))))


def test_a_full_key_runs_any_document(trusted: Trusted) -> None:
    assert post(trusted, FULL_KEY, query=UNLISTED).ok
    introspection = post(trusted, FULL_KEY, query="{ __schema { queryType { name } } }")
    assert introspection.body["data"]["__schema"]["queryType"]["name"] == "Query"
    broken = post(trusted, FULL_KEY, query="{ book(id: ")
    assert broken.codes == ["GRAPHQL_PARSE_FAILED"]  # the team's mistakes are read and told


def test_sighup_reloads_the_list(restored: Trusted) -> None:
    later = {"documentId": f"sha256:{sha256(LATER)}"}
    refused_unlisted(post(restored, **later))
    restored.write(apollo_manifest(BOOK, LATER))  # SIMILAR removed, LATER added
    restored.reload()
    until(lambda: post(restored, **later).ok)
    refused_unlisted(post(restored, extensions=apq(sha256(SIMILAR)), variables={"id": "9"}))
    assert post(restored, extensions=apq(sha256(BOOK)), variables={"id": "9"}).ok


def test_graphql_codegen_persisted_documents_are_read_too(restored: Trusted) -> None:
    """The client preset's persisted-documents.json: {hash: body}."""
    restored.write({sha256(LATER): LATER})
    restored.reload()
    until(lambda: post(restored, documentId=f"sha256:{sha256(LATER)}").ok)
    refused_unlisted(post(restored, documentId=f"sha256:{sha256(BOOK)}", variables={"id": "9"}))


BROKEN = {
    "not JSON": "{ nope",
    "not an object": "[]",
    "another format": {"format": "something-else", "version": 1, "operations": []},
    "an id that is not a SHA-256": {"abc": BOOK},
    "a body that does not hash to its id": {sha256(SIMILAR): BOOK},
    "operations that are not a list": {
        "format": "apollo-persisted-query-manifest",
        "version": 1,
        "operations": {},
    },
}


def test_a_broken_manifest_on_sighup_keeps_the_list_and_says_so(restored: Trusted) -> None:
    for broken in BROKEN.values():
        logged = restored.served.output().count(NOT_RELOADED)
        restored.write(broken)
        restored.reload()
        until(lambda seen=logged: restored.served.output().count(NOT_RELOADED) > seen)
        assert post(restored, extensions=apq(sha256(BOOK)), variables={"id": "9"}).ok
        refused_unlisted(post(restored, query=UNLISTED))
    assert restored.served.process.poll() is None


@pytest.mark.parametrize("broken", sorted(BROKEN))
def test_a_broken_manifest_stops_the_start_in_one_line(
    broken: str, environment: dict[str, str], tmp_path: Path
) -> None:
    """Exit code 1 (input refused, as the README's command line section has it), one line
    naming the file and what is wrong with it, no traceback."""
    manifest = tmp_path / "manifest.json"
    content = BROKEN[broken]
    manifest.write_text(content if isinstance(content, str) else json.dumps(content))
    served = start_server(
        tmp_path / "serve.log",
        **environment,
        LOOKALIKE_DATA_DIR=str(tmp_path / "data"),
        LOOKALIKE_TRUSTED_DOCUMENTS=str(manifest),
    )
    try:
        code = served.process.wait(timeout=120)
    finally:
        served.stop()
    output = served.output()
    assert code == 1, output
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, output
    assert str(manifest) in errors[0]
    assert "Traceback" not in output


def test_a_missing_manifest_stops_the_start(environment: dict[str, str], tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.json"
    served = start_server(
        tmp_path / "serve.log",
        **environment,
        LOOKALIKE_DATA_DIR=str(tmp_path / "data"),
        LOOKALIKE_TRUSTED_DOCUMENTS=str(missing),
    )
    try:
        assert served.process.wait(timeout=120) == 1
    finally:
        served.stop()
    assert f"error: cannot read the trusted documents {missing}" in served.output()


def test_trusted_documents_apollo(environment: dict[str, str], tmp_path: Path) -> None:
    """Apollo's persisted query list, end to end: @apollo/generate-persisted-query-manifest
    makes the manifest from the app's source (tests/clients/trusted-app/), the server trusts
    it, and Apollo Client's persisted queries link with generatePersistedQueryIdsFromManifest
    sends ids alone, over POST and GET; other clients' documents are refused."""
    assert (CLIENTS / "node_modules" / "@apollo" / "persisted-query-lists").is_dir(), (
        f"run `npm ci` in {CLIENTS} first (.ci/run does)"
    )
    manifest = tmp_path / "persisted-query-manifest.json"
    config = tmp_path / "persisted-query-manifest.config.json"
    config.write_text(json.dumps({"documents": ["trusted-app/**/*.mjs"], "output": str(manifest)}))
    generated = subprocess.run(
        ["node_modules/.bin/generate-persisted-query-manifest", "--config", str(config)],
        cwd=CLIENTS,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert generated.returncode == 0, generated.stderr + generated.stdout
    operations = json.loads(manifest.read_text())["operations"]
    assert {o["name"] for o in operations} == {"TrustedBook", "TrustedSimilar"}
    with serving(
        tmp_path / "serve.log",
        **environment,
        LOOKALIKE_DATA_DIR=str(tmp_path / "data"),
        LOOKALIKE_TRUSTED_DOCUMENTS=str(manifest),
    ) as served:
        done = subprocess.run(
            ["node", "trusted.mjs", f"{served.base}/graphql", str(manifest), FULL_KEY],
            cwd=CLIENTS,
            capture_output=True,
            text=True,
            timeout=180,
        )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    results, wire = out["results"], out["wire"]
    ids = {o["name"]: o["id"] for o in operations}
    assert results["book"]["data"]["book"]["title"] == "Transformers: The Ultimate Guide"
    assert len(results["similar"]["data"]["book"]["similar"]) == 3
    assert results["bookOverGet"]["data"]["book"]["title"] == "It"
    # the app sent each id alone, once, and never the text
    assert [(w["method"], w["query"], w["hash"], w["codes"]) for w in wire["app"]] == [
        ("POST", None, ids["TrustedBook"], []),
        ("POST", None, ids["TrustedSimilar"], []),
    ]
    assert [(w["method"], w["query"], w["hash"]) for w in wire["get"]] == [
        ("GET", None, ids["TrustedBook"])
    ]
    assert [e["code"] for e in results["unlisted"]["errors"]] == [NOT_IN_LIST]
    assert [e["code"] for e in results["apq"]["errors"]] == [NOT_IN_LIST]
    assert [w["codes"] for w in wire["apq"]] == [[NOT_IN_LIST]]  # no text sent after it
    assert results["team"]["data"]["book"]["title"] == "Transformers: The Ultimate Guide"
