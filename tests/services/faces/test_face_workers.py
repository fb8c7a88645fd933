"""One photo cannot hold the face worker: a real ``lookalike serve`` with one face worker.

A photo of a crowd is answered (only its largest face is embedded), a request past its
deadline frees the worker, a worker killed with SIGKILL is replaced, and closing never waits
for a worker. A worker stuck in C code (a pathological photo, a machine out of memory) is
made by stopping the real worker process with SIGSTOP: nothing in the server can tell it
from a photo that takes forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from lookalike.services.core.errors import ServiceUnavailable
from lookalike.services.core.settings import Settings
from lookalike.services.faces.images import ImageLimits
from lookalike.services.faces.workers import FaceWorkers
from tests.photos import ENROLL, IDENTIFY, PREFLIGHT, encoded, orl, orl_image, tiled
from tests.servers import Served, serving

TIMEOUT = 8.0  # the server's request deadline: a crowd photo fits well within it


def post_photo(server: Served, query: str, image: bytes, **variables: Any) -> httpx.Response:
    operations = {"query": query, "variables": {**variables, "image": None}}
    return httpx.post(
        f"{server.base}/graphql",
        data={"operations": json.dumps(operations), "map": json.dumps({"0": ["variables.image"]})},
        files={"0": ("photo", image, "application/octet-stream")},
        headers=PREFLIGHT,
        timeout=60,
    )


def identify(server: Served, image: bytes) -> dict[str, Any]:
    body: dict[str, Any] = post_photo(server, IDENTIFY, image, k=1).json()
    return body


def face_workers(server: Served) -> list[int]:
    """The server's face worker processes: its children spawned by multiprocessing."""
    pid = server.process.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    workers = []
    for child in children:
        with contextlib.suppress(FileNotFoundError):
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                workers.append(int(child))
    return workers


def the_worker(server: Served) -> int:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        workers = face_workers(server)
        if len(workers) == 1:
            return workers[0]
        time.sleep(0.1)
    raise AssertionError(f"expected one face worker, found {face_workers(server)}")


def gone(pid: int, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists():
            return True
        time.sleep(0.05)
    return False


@pytest.fixture(scope="module")
def server(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("worker-server")
    environment = {
        "REDIS_URL": settings.redis_url or "",
        "LOOKALIKE_DATA_DIR": str(folder / "data"),
        "LOOKALIKE_FACE_WORKERS": "1",
        "LOOKALIKE_REQUEST_TIMEOUT": str(TIMEOUT),
    }
    with serving(folder / "serve.log", **environment) as served:
        for number in (1, 2, 3):  # a loopback client: with no keys configured, it may enrol
            body = post_photo(served, ENROLL, orl("s2", number), id="worker-probe").json()
            assert "errors" not in body, body
        yield served
        httpx.post(
            f"{served.base}/graphql",
            json={"query": 'mutation { deletePerson(id: "worker-probe") }'},
        )


def test_a_crowd_is_answered_from_its_largest_face(server: Served) -> None:
    """238 faces (only the largest is embedded): the largest, an enrolled person's, is
    identified well within the deadline."""
    body = identify(server, crowd_photo())
    assert "errors" not in body, body
    found = body["data"]["identifyFace"]
    assert found["facesDetected"] > 100
    assert found["person"]["id"] == "worker-probe"


def test_a_request_past_its_deadline_frees_the_worker(server: Served) -> None:
    stuck = the_worker(server)
    os.kill(stuck, signal.SIGSTOP)
    try:
        response = post_photo(server, IDENTIFY, orl("s2", 8), k=1)
        assert response.status_code == 504
        assert response.json()["errors"][0]["extensions"]["code"] == "TIMEOUT"
        assert gone(stuck, within=5), "the worker of the cancelled request is still there"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(stuck, signal.SIGCONT)
    found = identify(server, orl("s2", 8))  # waits for the new worker, within its deadline
    assert "errors" not in found, found
    assert found["data"]["identifyFace"]["person"]["id"] == "worker-probe"
    assert the_worker(server) != stuck


def test_an_idle_worker_killed_is_replaced_and_the_next_request_works(server: Served) -> None:
    """However soon the photo follows the kill: a worker not yet dead when the photo is
    handed to it dies before it takes the photo, which another worker then reads."""
    killed = the_worker(server)
    os.kill(killed, signal.SIGKILL)
    found = identify(server, orl("s2", 8))
    assert "errors" not in found, found
    assert found["data"]["identifyFace"]["person"]["id"] == "worker-probe"
    assert the_worker(server) != killed


def test_a_worker_that_dies_before_taking_the_photo_hands_it_to_another(server: Served) -> None:
    """The photo reaches a worker that is alive but will never read it (stopped, then killed:
    a worker killed a moment before the photo came is such a worker until it is gone): the
    photo is not to blame, and a new worker answers it."""
    worker = the_worker(server)
    os.kill(worker, signal.SIGSTOP)
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(identify, server, orl("s2", 8))
        time.sleep(1.0)  # the photo is in the stopped worker's pipe
        os.kill(worker, signal.SIGKILL)
        found = pending.result(timeout=TIMEOUT)
    assert "errors" not in found, found
    assert found["data"]["identifyFace"]["person"]["id"] == "worker-probe"
    assert the_worker(server) != worker


def cpu_ticks(pid: int) -> int:
    """The process's user and system time, in clock ticks (/proc/PID/stat, fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def crowd_photo() -> bytes:
    """A photo whose reading takes the worker a while: a crowd, its largest face s2's."""
    people = [(f"s{1 + n % 40}", 1 + (n // 40) % 10) for n in range(238)]
    crowd = tiled([p for p in people if p[0] != "s2"], columns=17)
    crowd.paste(orl_image("s2", 9).resize((184, 224)), (0, 0))
    return encoded(crowd, "JPEG", quality=90)


def test_a_worker_killed_mid_photo_fails_only_that_photo(server: Served) -> None:
    """Killed once it is working on the photo (its CPU time has grown: an idle worker spends
    none), the worker fails that photo alone; the photo is not tried again elsewhere, since
    it may be what killed it."""
    worker = the_worker(server)
    idle = cpu_ticks(worker)
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(identify, server, crowd_photo())
        deadline = time.monotonic() + TIMEOUT
        while cpu_ticks(worker) < idle + 3 and time.monotonic() < deadline:
            time.sleep(0.002)
        os.kill(worker, signal.SIGKILL)
        failed = pending.result(timeout=TIMEOUT)
    assert failed["data"] is None, failed
    assert [e["extensions"]["code"] for e in failed["errors"]] == ["SERVICE_UNAVAILABLE"]
    found = identify(server, orl("s2", 8))
    assert "errors" not in found, found
    assert found["data"]["identifyFace"]["person"]["id"] == "worker-probe"


def test_closing_the_pool_never_blocks_the_event_loop() -> None:
    """A worker stopped mid-photo: closing kills it at once, and the loop keeps turning."""

    async def scenario() -> tuple[float, float, bool]:
        workers = FaceWorkers(1, ImageLimits(10_000_000, 10_000_000))
        await workers.start()
        (pid,) = workers.pids()
        os.kill(pid, signal.SIGSTOP)
        photo = asyncio.create_task(workers.embed(orl("s2", 8)))
        await asyncio.sleep(0.3)
        gaps: list[float] = []

        async def heartbeat() -> None:
            last = time.perf_counter()
            while True:
                await asyncio.sleep(0.01)
                now = time.perf_counter()
                gaps.append(now - last)
                last = now

        beating = asyncio.create_task(heartbeat())
        started = time.perf_counter()
        await workers.close()
        took = time.perf_counter() - started
        with pytest.raises(ServiceUnavailable):  # the photo in the killed worker fails ...
            await asyncio.wait_for(photo, 10)  # ... at once, rather than wait for ever
        beating.cancel()
        return took, max(gaps, default=0.0), gone(pid, within=5)

    took, longest_gap, killed = asyncio.run(scenario())
    assert killed
    assert took < 5
    assert longest_gap < 1.0


def test_sigterm_stops_the_server_with_a_stuck_worker(settings: Settings, tmp_path: Path) -> None:
    environment = {
        "REDIS_URL": settings.redis_url or "",
        "LOOKALIKE_DATA_DIR": str(tmp_path / "data"),
        "LOOKALIKE_FACE_WORKERS": "1",
        "LOOKALIKE_REQUEST_TIMEOUT": "5",
    }
    with serving(tmp_path / "serve.log", **environment) as served:
        stuck = the_worker(served)
        os.kill(stuck, signal.SIGSTOP)
        served.process.send_signal(signal.SIGTERM)
        try:
            served.process.wait(timeout=20)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(stuck, signal.SIGKILL)
        assert gone(stuck, within=5)
