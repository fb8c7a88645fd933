"""``lookalike serve`` with ``LOOKALIKE_WORKERS=2``: real processes on one port, a real Redis.

Each server starts on an index and key prefix nobody has used, so its workers start together
against an empty catalogue, as replicas of a fresh deploy do.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from lookalike.services.core.settings import Settings
from tests.servers import Served, start_server, start_server_in_own_group

WORKERS = 2
LOADED = "loaded the shipped catalogue"
STARTED = "Application startup complete."
SIMILAR = '{ book(id: "9") { similar(k: 1) { book { id } } } }'


def _descendants(pid: int) -> set[int]:
    """Every process below ``pid``: its workers, their face workers, the embedded Redis."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rpartition(")")[2].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    """Running, or at least not yet reaped to nothing (a zombie counts as gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


def _kill_tree(server: Served) -> None:
    for pid in _descendants(server.process.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    server.stop()


def _start(
    tmp_path: Path, redis_url: str | None, *, own_session: bool = False, **environment: str
) -> Served:
    name = f"wk{uuid.uuid4().hex[:8]}"
    settings = {
        "LOOKALIKE_DATA_DIR": str(tmp_path / "data"),
        "LOOKALIKE_INDEX_NAME": name,
        "LOOKALIKE_KEY_PREFIX": name,
        "LOOKALIKE_WORKERS": str(WORKERS),
        # workers and their face workers start at once on a shared 2-core machine: a
        # catalogue chunk's writes took over the default 2 s there
        "LOOKALIKE_REDIS_TIMEOUT": "10",
        "REDIS_URL": redis_url or "",
        "LOOKALIKE_REDIS_URL": redis_url or "",
        **environment,
    }
    start = start_server_in_own_group if own_session else start_server
    server = start(tmp_path / "serve.log", **settings)
    server.wait_ready(timeout=240)
    return server


@pytest.fixture(scope="module")
def workers(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    server = _start(tmp_path_factory.mktemp("workers"), settings.redis_url)
    try:
        yield server
    finally:
        _kill_tree(server)


def _pid_answers(base: str, connections: int) -> list[int]:
    """The pid that answered each of ``connections`` connections, opened at once."""

    def one(_: int) -> int:
        with httpx.Client(base_url=base, timeout=60) as client:
            pid: int = client.get("/healthz").json()["pid"]
            return pid

    with concurrent.futures.ThreadPoolExecutor(connections) as pool:
        return list(pool.map(one, range(connections)))


def _pids_of_every_worker(base: str, timeout: float = 60) -> set[int]:
    """Connections until two workers have answered (the kernel gives each accept to one)."""
    seen: set[int] = set()
    deadline = time.monotonic() + timeout
    while len(seen) < WORKERS and time.monotonic() < deadline:
        seen |= set(_pid_answers(base, 16))
    return seen


def test_workers_started_together_load_the_catalogue_once_and_all_answer(
    workers: Served,
) -> None:
    pids = _pids_of_every_worker(workers.base)
    assert len(pids) == WORKERS, pids
    assert pids <= _descendants(workers.process.pid)
    lines = [json.loads(line) for line in workers.output().splitlines()]
    loads = [line for line in lines if line["msg"] == LOADED]
    assert len(loads) == 1, loads
    started = {line["pid"] for line in lines if line["msg"] == STARTED}
    assert started == pids
    # each worker answers a query (a connection reaches one worker; try until each has)
    answered: set[int] = set()
    deadline = time.monotonic() + 60
    while answered != pids and time.monotonic() < deadline:
        with httpx.Client(base_url=workers.base, timeout=60) as client:
            pid = client.get("/healthz").json()["pid"]
            answer = client.post("/graphql", json={"query": SIMILAR}).json()
            assert answer["data"]["book"]["similar"] == [{"book": {"id": "15"}}], answer
            answered.add(pid)
    assert answered == pids


def _requests_counted(base: str, operation: str) -> float:
    families = text_string_to_metric_families(httpx.get(f"{base}/metrics").text)
    for family in families:
        if family.name == "lookalike_graphql_requests":
            for sample in family.samples:
                if sample.name.endswith("_total") and sample.labels["operation"] == operation:
                    return sample.value
    return 0.0


def test_metrics_of_any_worker_count_the_requests_every_worker_answered(
    workers: Served,
) -> None:
    operation = f"counted{uuid.uuid4().hex[:8]}"
    query = {"query": f"query {operation} {SIMILAR}"}

    def one(_: int) -> int:
        with httpx.Client(base_url=workers.base, timeout=60) as client:
            pid: int = client.get("/healthz").json()["pid"]
            assert client.post("/graphql", json=query).status_code == 200
            return pid

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        pids = list(pool.map(one, range(40)))
    while len(set(pids)) < WORKERS and len(pids) < 400:  # until both workers answered some
        pids += [one(0) for _ in range(8)]
    assert len(set(pids)) == WORKERS
    # every scrape, whichever worker answers it, sees the sum
    scrapes = {_requests_counted(workers.base, operation) for _ in range(6)}
    assert scrapes == {float(len(pids))}


def _stopped_with(signal_number: int, tmp_path: Path, redis_url: str | None) -> None:
    server = _start(tmp_path, redis_url, own_session=True)
    try:
        # ready is one worker ready: a signal before the other has started would stop it
        # starting (Ctrl-C stops the embedded Redis it is connecting to), not serving
        deadline = time.monotonic() + 240
        while server.output().count(STARTED) < WORKERS and time.monotonic() < deadline:
            time.sleep(0.2)
        tree = _descendants(server.process.pid)
        # two workers, each with its face worker (and, with no REDIS_URL, the embedded Redis)
        assert len(tree) >= 2 * WORKERS, tree
        if signal_number == signal.SIGINT:  # Ctrl-C: the terminal signals the whole group
            os.killpg(server.process.pid, signal.SIGINT)
        else:  # an orchestrator signals the process it started
            server.process.send_signal(signal_number)
        server.process.wait(timeout=120)
        deadline = time.monotonic() + 30
        while (left := {pid for pid in tree if _alive(pid)}) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not left, f"still running: {left}\n{server.output()}"
        output = server.output()
        assert output.count("Application shutdown complete.") == WORKERS, output
    finally:
        _kill_tree(server)


def test_sigterm_stops_every_worker_and_face_worker(settings: Settings, tmp_path: Path) -> None:
    _stopped_with(signal.SIGTERM, tmp_path, settings.redis_url)


def test_ctrl_c_stops_every_worker_face_worker_and_the_embedded_redis(tmp_path: Path) -> None:
    _stopped_with(signal.SIGINT, tmp_path, None)
