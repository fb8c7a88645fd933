"""A new ``lookalike serve`` loads the text model as it starts: its first search does not.

Real server processes on the session's Redis, on a catalogue loaded before they start
(``catalogue``), so that they are ready within a second or two of starting, before the model.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from starlette.testclient import TestClient

from lookalike.schema.app import create_app
from lookalike.services.core.settings import Settings
from tests.conftest import wait_ready
from tests.servers import Served, serving, start_server

MODEL_READY = "text model ready"


@pytest.fixture(scope="module")
def catalogue(settings: Settings) -> Iterator[Settings]:
    """A fresh index with the shipped catalogue loaded, by an app in this process."""
    name = f"warm{uuid.uuid4().hex[:8]}"
    # a shared, busy machine: a catalogue chunk's writes took over the default 2 s there
    loaded = settings.model_copy(
        update={"index_name": name, "key_prefix": name, "redis_timeout": 10}
    )
    with TestClient(create_app(loaded)) as api:
        assert wait_ready(api, timeout=180)["status"] == "ready"
    yield loaded
    redis.Redis.from_url(loaded.redis_url or "").ft(name).dropindex(delete_documents=True)


def _environment(catalogue: Settings, tmp_path: Path, **more: str) -> dict[str, str]:
    return {
        "REDIS_URL": catalogue.redis_url or "",
        "LOOKALIKE_DATA_DIR": str(tmp_path / "data"),
        "LOOKALIKE_INDEX_NAME": catalogue.index_name,
        "LOOKALIKE_KEY_PREFIX": catalogue.key_prefix,
        "LOOKALIKE_REDIS_TIMEOUT": str(catalogue.redis_timeout),
        **more,
    }


def _lines(server: Served) -> list[dict[str, Any]]:
    return [json.loads(line) for line in server.output().splitlines()]


def _model_ready(server: Served, timeout: float = 180) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready = [line for line in _lines(server) if line["msg"] == MODEL_READY]
        if ready:
            return ready[0]
        time.sleep(0.2)
    raise AssertionError(f"the text model did not load within {timeout} s:\n{server.output()}")


def test_a_new_server_loads_the_text_model_before_any_search_and_its_first_search_is_quick(
    catalogue: Settings, tmp_path: Path
) -> None:
    with serving(tmp_path / "serve.log", **_environment(catalogue, tmp_path)) as server:
        # no search has been sent: the model loads all the same
        loaded = _model_ready(server)
        assert not [line for line in _lines(server) if line["msg"] == "graphql"]
        text = f"{uuid.uuid4().hex} a lighthouse keeper alone on an island"
        query = f'{{ searchBooks(text: "{text}", k: 3) {{ distance }} }}'
        answer = httpx.post(f"{server.base}/graphql", json={"query": query}, timeout=120)
        assert len(answer.json()["data"]["searchBooks"]) == 3
        (request,) = [line for line in _lines(server) if line["msg"] == "graphql"]
        # the search ran the model (a new text) and did not wait for it to load: a model run
        # is milliseconds, its load seconds (the margin is wide for a busy machine)
        assert request["model_ms"] > 0
        assert request["model_ms"] < loaded["seconds"] * 1000 / 3, (request, loaded)
        assert [line["msg"] for line in _lines(server)].count("loading the text model") == 1


def test_readyz_waits_for_the_text_model_when_the_setting_asks(
    catalogue: Settings, tmp_path: Path
) -> None:
    environment = _environment(catalogue, tmp_path, LOOKALIKE_READY_WAITS_FOR_MODELS="true")
    server = start_server(tmp_path / "serve.log", **environment)
    try:
        reasons: list[str] = []
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                response = httpx.get(f"{server.base}/readyz")
                if response.status_code == 200:
                    break
                reasons.append(response.json()["reason"])
            assert server.process.poll() is None, server.output()
            time.sleep(0.1)
        # the first 200 came once the model had loaded, and the catalogue was ready before
        assert [line["msg"] for line in _lines(server)].count(MODEL_READY) == 1
        assert reasons[-1] == "text model loading", reasons
    finally:
        server.stop()
