"""Servers on one Redis whose settings shape an index differently never break each other.

Real ``lookalike serve`` processes and real ``lookalike books convert`` runs on the session's
Redis, each test on a book index of its own: a server whose settings disagree with an index
that others use refuses to start, a conversion is an explicit step (the command, or a start
that finds nobody else live), and a server whose index was converted under it (forced) says
it is not ready and answers SERVICE_UNAVAILABLE rather than failing its requests.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from lookalike.services.core.settings import Settings
from tests.servers import Served, serving, start_server
from tests.services.books.test_similar_books import COURSE

SIMILAR = '{ book(id: "9") { similar(k: 5) { book { id } } } }'
SEARCH = '{ searchBooks(text: "a wizard school", k: 3) { book { id } } }'


@pytest.fixture
def environment(settings: Settings, tmp_path: Path) -> Iterator[dict[str, str]]:
    """A book index and key prefix nobody else uses, on the session's Redis."""
    name = f"agree{uuid.uuid4().hex[:8]}"
    yield {
        "REDIS_URL": settings.redis_url or "",
        "LOOKALIKE_DATA_DIR": str(tmp_path / "data"),
        "LOOKALIKE_INDEX_NAME": name,
        "LOOKALIKE_KEY_PREFIX": name,
        # a shared machine: a catalogue chunk's write may wait on Redis for over 2 s
        "LOOKALIKE_REDIS_TIMEOUT": "10",
    }
    client = redis.Redis.from_url(settings.redis_url or "")
    client.ft(name).dropindex(delete_documents=True)
    client.close()


def post(served: Served, query: str) -> tuple[int, dict[str, Any]]:
    response = httpx.post(f"{served.base}/graphql", json={"query": query}, timeout=30)
    body: dict[str, Any] = response.json()
    return response.status_code, body


def codes(body: dict[str, Any]) -> list[str]:
    return [error["extensions"]["code"] for error in body.get("errors", [])]


def answers(served: Served) -> None:
    """The server answers similar and searchBooks."""
    status, body = post(served, SIMILAR)
    assert status == 200, body
    assert [m["book"]["id"] for m in body["data"]["book"]["similar"]] == COURSE["9"][0]
    status, body = post(served, SEARCH)
    assert status == 200, body
    assert len(body["data"]["searchBooks"]) == 3


def refused_start(log: Path, environment: dict[str, str]) -> tuple[int, list[dict[str, Any]]]:
    served = start_server(log, **environment)
    try:
        code = served.process.wait(timeout=120)
    finally:
        served.stop()
    return code, [json.loads(line) for line in served.output().splitlines() if line.strip()]


def convert(environment: dict[str, str], *options: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **environment}
    return subprocess.run(
        [sys.executable, "-m", "lookalike.schema.cli", "books", "convert", *options],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def vector_size(environment: dict[str, str]) -> int:
    client = redis.Redis.from_url(environment["REDIS_URL"])
    blob = client.hget(f"{environment['LOOKALIKE_KEY_PREFIX']}:9", "embedding") or b""
    client.close()
    return len(blob)


@pytest.mark.parametrize(
    ("variant", "named"),
    [
        ({"LOOKALIKE_VECTOR_TYPE": "float32"}, "LOOKALIKE_VECTOR_TYPE=float32"),
        ({"LOOKALIKE_HNSW_M": "24"}, "LOOKALIKE_HNSW_M=24"),
        ({"LOOKALIKE_HNSW_EF_CONSTRUCTION": "100"}, "LOOKALIKE_HNSW_EF_CONSTRUCTION=100"),
    ],
    ids=["vector-type", "hnsw-m", "ef-construction"],
)
def test_a_server_whose_settings_disagree_refuses_to_start_and_the_first_keeps_answering(
    environment: dict[str, str], tmp_path: Path, variant: dict[str, str], named: str
) -> None:
    first_settings = {**environment, "LOOKALIKE_VECTOR_TYPE": "float16"}
    with serving(tmp_path / "first.log", **first_settings) as first:
        answers(first)
        code, lines = refused_start(tmp_path / "second.log", {**first_settings, **variant})
        assert code != 0
        errors = [line["msg"] for line in lines if line["level"] == "error"]
        assert errors, lines
        assert named in errors[0]
        assert "1 other live lookalike process" in errors[0]
        assert "lookalike books convert" in errors[0]
        assert "\n" not in errors[0]
        assert "Traceback" not in (tmp_path / "second.log").read_text()
        answers(first)
        assert httpx.get(f"{first.base}/readyz").json()["status"] == "ready"
    assert vector_size(environment) == 768  # still FLOAT16


PEOPLE = "{ people(first: 5) { totalCount } }"


def test_a_face_layout_that_disagrees_refuses_to_start_and_a_change_under_it_is_unready(
    tmp_path: Path,
) -> None:
    """Nobody enrolled yet (so the layout could change), but a live server uses the other.
    When the layout changes under a server anyway, it stops serving faces until it is back."""
    own = {"REDIS_URL": "", "LOOKALIKE_REDIS_URL": "", "LOOKALIKE_DATA_DIR": str(tmp_path)}
    with serving(tmp_path / "first.log", **own, FACE_LAYOUT="hash") as first:
        code, lines = refused_start(tmp_path / "second.log", {**own, "FACE_LAYOUT": "json"})
        assert code != 0
        errors = [line["msg"] for line in lines if line["level"] == "error"]
        assert "FACE_LAYOUT=json" in errors[0]
        assert "1 other live lookalike process" in errors[0]
        assert httpx.get(f"{first.base}/readyz").json()["status"] == "ready"
        assert "errors" not in post(first, PEOPLE)[1]

        client = redis.Redis.from_url((tmp_path / "redis.url").read_text().strip())
        client.set("faces:layout", "json")  # what a json server alone would have done
        ready = httpx.get(f"{first.base}/readyz")
        assert ready.status_code == 503
        assert "the face index was converted by another process" in ready.json()["reason"]
        assert "FACE_LAYOUT=hash" in ready.json()["reason"]
        assert codes(post(first, PEOPLE)[1]) == ["SERVICE_UNAVAILABLE"]
        answers(first)  # books are another index: still served

        client.set("faces:layout", "hash")
        assert httpx.get(f"{first.base}/readyz").status_code == 200
        assert "errors" not in post(first, PEOPLE)[1]
        client.close()


def test_the_command_converts_the_index_while_no_server_runs(
    environment: dict[str, str], tmp_path: Path
) -> None:
    with serving(tmp_path / "half.log", **environment, LOOKALIKE_VECTOR_TYPE="float16") as half:
        answers(half)
        half.shutdown()  # stopped as an orchestrator stops it: it withdraws
        assert "Application shutdown complete" in half.output()
    assert vector_size(environment) == 768
    done = convert(environment, "--vector-type", "float32")
    assert done.returncode == 0, done.stderr
    name = environment["LOOKALIKE_INDEX_NAME"]
    assert f"the book index '{name}' converted to LOOKALIKE_VECTOR_TYPE=float32" in done.stdout
    assert "1486 books" in done.stdout
    assert vector_size(environment) == 1536
    with serving(tmp_path / "full.log", **environment, LOOKALIKE_VECTOR_TYPE="float32") as full:
        answers(full)
        assert "rebuilding" not in full.output()  # it found the index as it wants it
    again = convert(environment, "--vector-type", "float32")
    assert again.returncode == 0, again.stderr
    assert "already has LOOKALIKE_VECTOR_TYPE=float32" in again.stdout


def test_a_conversion_forced_under_a_live_server_makes_it_unready_not_failing(
    environment: dict[str, str], tmp_path: Path
) -> None:
    with serving(tmp_path / "half.log", **environment, LOOKALIKE_VECTOR_TYPE="float16") as half:
        answers(half)
        refused = convert(environment, "--vector-type", "float32")
        assert refused.returncode == 3
        assert "1 other live lookalike process" in refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
        assert vector_size(environment) == 768  # nothing converted
        answers(half)

        forced = convert(environment, "--vector-type", "float32", "--force")
        assert forced.returncode == 0, forced.stderr
        assert vector_size(environment) == 1536
        for query in (SIMILAR, SEARCH):
            _, body = post(half, query)
            assert codes(body) == ["SERVICE_UNAVAILABLE"], body
            assert "converted by another process" in body["errors"][0]["message"]
        ready = httpx.get(f"{half.base}/readyz")
        assert ready.status_code == 503
        assert "converted by another process" in ready.json()["reason"]
        assert "LOOKALIKE_VECTOR_TYPE=float16" in ready.json()["reason"]
        assert "Traceback" not in half.output()
    assert vector_size(environment) == 1536  # the stale server did not convert it back
    with serving(tmp_path / "full.log", **environment, LOOKALIKE_VECTOR_TYPE="float32") as full:
        answers(full)


def test_two_servers_of_other_settings_starting_together_one_serves_every_book(
    environment: dict[str, str], tmp_path: Path
) -> None:
    """Each announces itself before it looks at the index: whichever creates it, the other
    finds it announced and refuses, instead of converting the index while it loads."""
    servers = {
        kind: start_server(tmp_path / f"{kind}.log", **environment, LOOKALIKE_VECTOR_TYPE=kind)
        for kind in ("float16", "float32")
    }
    try:
        deadline = time.monotonic() + 180
        for served in servers.values():
            while served.process.poll() is None and time.monotonic() < deadline:
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{served.base}/readyz").status_code == 200:
                        break
                time.sleep(0.2)
        running = [kind for kind, served in servers.items() if served.process.poll() is None]
        assert len(running) == 1, {k: s.output()[-2000:] for k, s in servers.items()}
        (winner,) = running
        served = servers[winner]
        answers(served)
        assert httpx.get(f"{served.base}/readyz").json() == {"status": "ready", "books": 1486}
        assert vector_size(environment) == (768 if winner == "float16" else 1536)
        (loser,) = set(servers) - {winner}
        assert servers[loser].process.returncode != 0
        assert "other live lookalike process" in servers[loser].output()
    finally:
        for served in servers.values():
            served.stop()
