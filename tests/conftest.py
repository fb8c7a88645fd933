"""One real Redis (the embedded server: search and JSON modules) for the whole session.

The API fixture runs the real app with its lifespan, which loads the shipped catalogue into a
fresh index: every session is a fresh HNSW build.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from starlette.testclient import TestClient

from lookalike.schema.app import create_app
from lookalike.services.embedded_redis import EmbeddedRedis
from lookalike.services.settings import Settings

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"))
    yield server.start()
    server.stop()


API_KEY = "test-key-0123456789abcdef"  # the session app's one key; its client sends it


@pytest.fixture(scope="session")
def settings(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(
        redis_url=redis_url, data_dir=tmp_path_factory.mktemp("data"), api_keys=[SecretStr(API_KEY)]
    )


@pytest.fixture(scope="session")
def api(settings: Settings) -> Iterator[TestClient]:
    headers = {"Authorization": f"Bearer {API_KEY}"}
    with TestClient(create_app(settings), headers=headers) as client:
        yield client


@dataclass(frozen=True)
class LiveServer:
    url: str  # http://127.0.0.1:<port>
    key: str  # its one API key
    log: Path  # its stderr


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A real ``lookalike serve`` on a free port, for clients that need a real HTTP server (a
    browser, Node). It runs as a newcomer runs it: the installed command, its own embedded
    Redis in a fresh data directory, the shipped catalogue, default limits."""
    data = tmp_path_factory.mktemp("live-server")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "LOOKALIKE_REDIS_URL")}
    env |= {
        "LOOKALIKE_DATA_DIR": str(data),
        "LOOKALIKE_PORT": str(port),
        "LOOKALIKE_API_KEYS": API_KEY,
    }
    log = data / "serve.log"
    command = [str(Path(sys.executable).with_name("lookalike")), "serve"]
    with log.open("w") as stderr:
        server = subprocess.Popen(command, env=env, stderr=stderr, stdout=stderr)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, f"lookalike serve exited: {log.read_text()}"
            assert time.monotonic() < deadline, f"not ready in 120 s: {log.read_text()}"
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/readyz").status_code == 200:
                    break
            time.sleep(0.2)
        yield LiveServer(url, API_KEY, log)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def redis_dump(redis_url: str, pattern: str) -> dict[bytes, Any]:
    """Every key matching ``pattern`` with its value: to prove a request wrote nothing."""
    client = redis.Redis.from_url(redis_url)
    dumped: dict[bytes, Any] = {}
    for key in client.scan_iter(match=pattern, count=1000):
        kind = client.type(key)
        if kind == b"hash":
            dumped[key] = client.hgetall(key)
        elif kind == b"ReJSON-RL":
            dumped[key] = client.json().get(key, "$")
        elif kind == b"zset":
            dumped[key] = client.zrange(key, 0, -1)
        else:
            dumped[key] = client.get(key)
    client.close()
    return dumped


def gql(client: TestClient, query: str, **variables: Any) -> dict[str, Any]:
    response = client.post("/graphql", json={"query": query, "variables": variables})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def metric(text: str, name: str, **labels: str) -> float:
    """One sample's value from a /metrics page, read with prometheus_client's own parser
    (0 when the series is absent)."""
    for family in text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == name and found.labels == labels:
                return float(found.value)
    return 0.0


def metric_names(text: str) -> set[str]:
    return {family.name for family in text_string_to_metric_families(text)}


def metric_labels(text: str, name: str, label: str) -> set[str]:
    """Every value one label takes in a metric's samples."""
    return {
        found.labels[label]
        for family in text_string_to_metric_families(text)
        for found in family.samples
        if found.name == name and label in found.labels
    }


def error_codes(body: dict[str, Any]) -> list[str]:
    return [error["extensions"]["code"] for error in body.get("errors", [])]
