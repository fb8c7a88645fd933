"""``lookalike serve`` on a Redis that cannot serve it says why in one sentence, first.

A plain Redis (the embedded server's binary started without its modules) has no search
module: the start-up fails, and the operator reads the reason as the first error, not at the
end of a traceback; the traceback is there for whoever asks for debug logs.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from lookalike.services.redis.embedded import server_binary
from tests.servers import free_port, start_server

SENTENCE = "lacks the search module"


@pytest.fixture(scope="module")
def plain_redis() -> Iterator[str]:
    """A Redis without the search and JSON modules."""
    port = free_port()
    process = subprocess.Popen(
        [str(server_binary()), "--port", str(port), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}"
    client = redis.Redis.from_url(url)
    for _ in range(100):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    yield url
    client.close()
    process.terminate()
    process.wait()


def _failed_start(url: str, log: Path, **environment: str) -> tuple[int, list[dict[str, Any]]]:
    served = start_server(log, REDIS_URL=url, LOOKALIKE_DATA_DIR=str(log.parent), **environment)
    try:
        code = served.process.wait(timeout=120)
    finally:
        served.stop()
    lines = [json.loads(line) for line in served.output().splitlines() if line.strip()]
    return code, lines


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_redis_without_the_search_module_is_one_sentence_first_and_no_traceback(
    plain_redis: str, tmp_path: Path, workers: str
) -> None:
    """Exit 3 (README, the command line's exit codes) whether one process failed to start or
    a worker of several did: uvicorn's supervisor alone would stop and exit 0."""
    code, lines = _failed_start(plain_redis, tmp_path / "serve.log", LOOKALIKE_WORKERS=workers)
    assert code == 3
    errors = [line for line in lines if line["level"] == "error"]
    assert errors, lines
    assert SENTENCE in errors[0]["msg"], errors[0]
    assert errors[0]["msg"].startswith(f"Redis at {plain_redis}")
    assert "\n" not in errors[0]["msg"]
    text = (tmp_path / "serve.log").read_text()
    assert "Traceback" not in text


def test_the_traceback_of_a_failed_start_is_in_the_debug_log(
    plain_redis: str, tmp_path: Path
) -> None:
    code, lines = _failed_start(plain_redis, tmp_path / "serve.log", LOOKALIKE_LOG_LEVEL="DEBUG")
    assert code != 0
    errors = [line for line in lines if line["level"] == "error"]
    assert SENTENCE in errors[0]["msg"]
    debug = [line for line in lines if line["level"] == "debug" and "exc" in line]
    assert any(SENTENCE in line["exc"] and "Traceback" in line["exc"] for line in debug), lines
