"""The embedded Redis, a Redis without modules, and Redis going away and coming back."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from functools import partial
from pathlib import Path

import anyio
import httpx
import pytest
import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import DataError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.testclient import TestClient

from lookalike.schema.app import create_app
from lookalike.services.books.catalogue import Catalogue
from lookalike.services.books.loading.loader import load_books
from lookalike.services.books.loading.shipped import read_shipped
from lookalike.services.books.records import ALL_FIELDS
from lookalike.services.books.requests import SimilarRequest
from lookalike.services.core.errors import ServiceUnavailable
from lookalike.services.core.settings import Settings
from lookalike.services.embeddings.text_model import text_embedder
from lookalike.services.faces.store import face_store
from lookalike.services.redis.connection import connect, open_redis
from lookalike.services.redis.embedded import EmbeddedRedis, server_binary
from lookalike.services.redis.indexes import drop_index
from tests.conftest import both_backends, error_codes, gql
from tests.photos import ENROLL, IDENTIFY, orl, send

SIMILAR_9 = '{ book(id: "9") { similar(k: 5) { book { id } } } }'


def test_serve_starts_embedded_redis_loads_catalogue_and_stops_it(tmp_path: Path) -> None:
    settings = Settings(redis_url=None, data_dir=tmp_path)
    with TestClient(create_app(settings)) as api:
        assert api.get("/readyz").json() == {"status": "ready", "books": 1486}
        url = (tmp_path / "redis.url").read_text().strip()
        redis.Redis(unix_socket_path=url.removeprefix("unix://")).set("marker", "kept")
    assert not (tmp_path / "redis.url").exists()
    with pytest.raises(redis.ConnectionError):
        redis.Redis(unix_socket_path=url.removeprefix("unix://")).ping()
    assert (tmp_path / "appendonlydir").is_dir()

    # Second start: the AOF brings everything back, nothing is loaded again.
    with TestClient(create_app(settings)) as api:
        assert api.get("/readyz").json()["books"] == 1486
        assert redis.Redis(unix_socket_path=url.removeprefix("unix://")).get("marker") == b"kept"
        assert gql(api, SIMILAR_9)["data"]["book"]["similar"][0]["book"]["id"] == "15"


def test_a_second_process_shares_the_running_embedded_redis(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path)
    url = server.start()
    try:
        with pytest.raises(ServiceUnavailable, match="another lookalike process"):
            EmbeddedRedis(tmp_path).start()

        async def shared() -> str:
            async with open_redis(Settings(redis_url=None, data_dir=tmp_path)) as (_, found):
                return found

        assert anyio.run(shared) == url
        assert server.process is not None
        assert server.process.poll() is None
    finally:
        server.stop()


def test_redis_without_search_and_json_is_refused_in_one_sentence(tmp_path: Path) -> None:
    socket = tmp_path / "plain.sock"
    plain = subprocess.Popen(
        [str(server_binary()), "--port", "0", "--unixsocket", str(socket), "--save", ""],
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not socket.exists() and time.monotonic() < deadline:
            time.sleep(0.05)

        async def attempt() -> None:
            async with open_redis(Settings(redis_url=f"unix://{socket}", data_dir=tmp_path)):
                pass

        with pytest.raises(ServiceUnavailable) as raised:
            anyio.run(attempt)
        assert "lacks the search module" in raised.value.message
        assert "\n" not in raised.value.message
    finally:
        plain.terminate()
        plain.wait()


def test_redis_down_gives_service_unavailable_and_the_server_recovers(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "redis")
    settings = Settings(redis_url=server.start(), data_dir=tmp_path, redis_timeout=1)
    try:  # a loopback client: with no keys configured, it may identify faces
        with TestClient(create_app(settings), client=("127.0.0.1", 50000)) as api:
            assert "errors" not in gql(api, SIMILAR_9)
            server.stop()

            down = gql(api, SIMILAR_9)
            assert down["data"] == {"book": None}
            assert error_codes(down) == ["SERVICE_UNAVAILABLE"]
            assert "Redis" in down["errors"][0]["message"]
            photo = send(api, IDENTIFY, orl("s1", 1), k=1).json()
            assert error_codes(photo) == ["SERVICE_UNAVAILABLE"]
            assert api.get("/readyz").status_code == 503
            assert api.get("/healthz").status_code == 200

            server.start()  # same data directory: the AOF brings the catalogue back
            deadline = time.monotonic() + 10
            while api.get("/readyz").status_code != 200 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert api.get("/readyz").status_code == 200
            back = gql(api, SIMILAR_9)
            assert "errors" not in back
            assert back["data"]["book"]["similar"][0]["book"]["id"] == "15"
    finally:
        server.stop()


NESTED_9 = '{ book(id: "9") { similar(k: 3) { book { id similar(k: 3) { book { id } } } } } }'


def test_a_redis_that_stops_answering_costs_service_unavailable_within_its_timeout(
    tmp_path: Path,
) -> None:
    """Redis alive but silent (stopped with SIGSTOP): every command, a loader's batch
    included, gives up after LOOKALIKE_REDIS_TIMEOUT, not after the request's 30 s; the
    connections it gave up on are closed, so the answers are right once Redis resumes."""
    server = EmbeddedRedis(tmp_path / "redis")
    settings = Settings(redis_url=server.start(), data_dir=tmp_path, redis_timeout=0.5)
    assert server.process is not None
    try:
        # the catalogue loaded first with time to spare: a loaded machine can take longer than
        # 0.5 s over one of its chunks, which is not what this test is about
        with TestClient(create_app(settings.model_copy(update={"redis_timeout": 10.0}))):
            pass
        with TestClient(create_app(settings)) as api:
            before = gql(api, NESTED_9)
            assert "errors" not in before
            os.kill(server.process.pid, signal.SIGSTOP)
            try:
                for query in (SIMILAR_9, NESTED_9):
                    started = time.monotonic()
                    down = gql(api, query)
                    assert time.monotonic() - started < 3  # 0.5 s per command tried
                    assert down["data"] == {"book": None}
                    assert error_codes(down) == ["SERVICE_UNAVAILABLE"]
            finally:
                os.kill(server.process.pid, signal.SIGCONT)
            # the same answer (new connections' handshakes add to its round trips)
            assert gql(api, NESTED_9)["data"] == before["data"]
    finally:
        server.stop()


def test_a_send_or_read_past_the_deadline_raises_and_closes_the_connection(
    tmp_path: Path,
) -> None:
    """The round trip's deadline (services/redis/round_trips.py) bounds a read waiting for a reply
    and a write the stopped server does not take (more than the socket buffers hold), and
    raises redis-py's TimeoutError, which the API answers SERVICE_UNAVAILABLE."""
    server = EmbeddedRedis(tmp_path / "redis")
    url = server.start()
    assert server.process is not None

    async def scenario() -> None:
        client = connect(url, 0.3)
        try:
            await client.set("deadline:small", b"1")
            os.kill(server.process.pid, signal.SIGSTOP)  # type: ignore[union-attr]
            try:
                big = b"x" * (32 << 20)  # far more than the socket buffers hold
                # the write first, on the open connection; the round trip's one deadline
                # covers a retry on a new connection too
                for command in (
                    partial(client.set, "deadline:big", big),
                    partial(client.get, "deadline:small"),
                ):
                    started = time.monotonic()
                    with pytest.raises((RedisTimeoutError, RedisConnectionError), match="Timeout"):
                        await asyncio.wait_for(command(), 10)  # without a deadline: hangs
                    assert time.monotonic() - started < 2
            finally:
                os.kill(server.process.pid, signal.SIGCONT)  # type: ignore[union-attr]
            assert await client.get("deadline:small") == b"1"
            assert await client.ping()
        finally:
            await client.aclose()

    try:
        anyio.run(scenario)
    finally:
        server.stop()


@pytest.mark.parametrize("build", range(3))
def test_every_fresh_index_build_reproduces_the_course(settings: Settings, build: int) -> None:
    fresh = settings.model_copy(
        update={"index_name": f"fresh{build}", "key_prefix": f"fresh{build}"}
    )

    async def run() -> list[list[str]]:
        async with open_redis(fresh) as (client, _):
            catalogue = Catalogue(client, fresh)
            shipped = read_shipped()
            await load_books(catalogue, shipped.records, shipped=shipped, embedder=text_embedder)
            ids = ["26415", "9"]
            sources = await catalogue.read(ids, ALL_FIELDS)
            found = await catalogue.similar(
                [SimilarRequest(i) for i in ids], {b.id: b for b in sources if b}
            )
            await drop_index(client, catalogue.schema, documents=True)
        return [[match.book.id for match in matches] for matches in found]

    assert anyio.run(run) == [
        ["3008", "2706", "23187", "942", "519"],
        ["15", "3", "110", "2", "37"],
    ]


def test_a_redis_holding_the_other_face_layout_is_refused(settings: Settings) -> None:
    async def scenario() -> None:
        async with open_redis(settings) as (client, _):
            hash_store = face_store("hash", client, namespace="switch:")
            await hash_store.open()
            await face_store("json", client, namespace="switch:").open()  # nobody: allowed
            await hash_store.open()
            await hash_store.enroll("someone", None, "0" * 64, bytes(4 * 128))
            try:
                with pytest.raises(ServiceUnavailable) as raised:
                    await face_store("json", client, namespace="switch:").open()
                message = raised.value.message
                assert "1 enrolled people in the hash layout, but FACE_LAYOUT is json" in message
                assert "FACE_LAYOUT=hash" in message
            finally:
                await hash_store.drop()
                await client.delete("switch:faces:layout")

    anyio.run(scenario)


def test_a_killed_embedded_redis_comes_back_with_its_books_and_people(tmp_path: Path) -> None:
    settings = Settings(redis_url=None, data_dir=tmp_path, redis_timeout=1)
    with TestClient(create_app(settings), client=("127.0.0.1", 50000)) as api:
        for number in (1, 2):
            enrolled = send(api, ENROLL, orl("s3", number), id="s3", name="Three").json()
            assert "errors" not in enrolled, enrolled
        url = (tmp_path / "redis.url").read_text().strip()
        pid = redis.Redis(unix_socket_path=url.removeprefix("unix://")).info()["process_id"]

        os.kill(pid, signal.SIGKILL)  # no shutdown, no final AOF flush
        while Path(f"/proc/{pid}").exists() and "zombie" not in _state(pid):
            time.sleep(0.01)
        assert error_codes(gql(api, SIMILAR_9)) == ["SERVICE_UNAVAILABLE"]

        deadline = time.monotonic() + 20
        while api.get("/readyz").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert api.get("/readyz").json() == {"status": "ready", "books": 1486}
        assert gql(api, SIMILAR_9)["data"]["book"]["similar"][0]["book"]["id"] == "15"
        found = send(api, IDENTIFY, orl("s3", 5), k=1).json()["data"]["identifyFace"]
        assert found["person"] == {"id": "s3", "name": "Three", "faceCount": 2}


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return "zombie"


def read_by(port: int, client: socket.socket, limit: float = 30.0) -> None:
    """Until the server listening on ``port`` has read all that ``client`` sent: the kernel
    holds nothing more of it for the server (/proc/net/tcp's receive queue of the server's
    end of this connection is empty). A fixed sleep instead is too short on a busy machine."""
    mine = client.getsockname()[1]
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            local, remote, state, queues = line.split()[1:5]
            ours = int(local.split(":")[1], 16) == port and int(remote.split(":")[1], 16) == mine
            if ours and state == "01" and int(queues.split(":")[1], 16) == 0:
                return
        time.sleep(0.01)
    raise AssertionError("the server did not read the request")


def test_sigterm_lets_the_request_in_flight_finish(settings: Settings, tmp_path: Path) -> None:
    """A real ``lookalike serve`` process: its first search loads the text model (seconds),
    SIGTERM arrives meanwhile; the search still gets its answer, then the process exits."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        **os.environ,
        "REDIS_URL": settings.redis_url or "",
        "LOOKALIKE_DATA_DIR": str(tmp_path),
        "LOOKALIKE_PORT": str(port),
    }
    env.pop("LOOKALIKE_API_KEYS", None)
    log_file = tmp_path / "serve.log"
    with log_file.open("w") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "lookalike.schema.cli", "serve"], env=env, stderr=log
        )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/readyz").status_code == 200:
                    break
            assert server.poll() is None, log_file.read_text()
            time.sleep(0.2)
        query = json.dumps(
            {"query": f'{{ searchBooks(text: "{uuid.uuid4().hex} robots", k: 3) {{ distance }} }}'}
        ).encode()
        with socket.create_connection(("127.0.0.1", port), timeout=60) as client:
            client.sendall(
                b"POST /graphql HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n"
                b"content-length: %d\r\n\r\n%s" % (len(query), query)
            )
            read_by(port, client)  # the server holds the request: the model is loading
            server.send_signal(signal.SIGTERM)
            response = b""
            while chunk := client.recv(65536):
                response += chunk
        head, _, body = response.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), response[:500]
        assert b"connection: close" in head.lower()  # it finishes this one, takes no other
        assert len(json.loads(body)["data"]["searchBooks"]) == 3
        # uvicorn re-raises the signal once it has shut down, as a process killed by it would
        assert server.wait(timeout=30) in (0, -signal.SIGTERM)
        output = log_file.read_text()
        assert "Application shutdown complete" in output  # the lifespan closed Redis and models
        # No keys configured: start-up said what that means.
        assert "mutations are accepted only from loopback clients" in output
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{base}/healthz")
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def test_a_redis_that_comes_back_empty_gets_its_indexes_and_books_again(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "redis")
    settings = Settings(redis_url=server.start(), data_dir=tmp_path, redis_timeout=1)
    try:
        with TestClient(create_app(settings), client=("127.0.0.1", 50000)) as api:
            assert "errors" not in gql(api, SIMILAR_9)
            server.stop()
            shutil.rmtree(tmp_path / "redis" / "appendonlydir")  # no data survives
            server.start()

            deadline = time.monotonic() + 20
            while api.get("/readyz").status_code != 200 and time.monotonic() < deadline:
                time.sleep(0.2)
            assert api.get("/readyz").json() == {"status": "ready", "books": 1486}
            assert gql(api, SIMILAR_9)["data"]["book"]["similar"][0]["book"]["id"] == "15"
            # the face index is back too: nobody is enrolled, so nobody is found
            found = send(api, IDENTIFY, orl("s1", 1), k=1).json()
            assert found["data"]["identifyFace"]["person"] is None, found
    finally:
        server.stop()


@both_backends
def test_commands_are_packed_as_sent_and_a_boolean_is_refused(settings: Settings) -> None:
    """Commands are packed by hiredis (services/redis/redis_compat.py): a memoryview goes as its
    bytes, numbers and texts as they are, and a boolean, which Redis would store as 1 or
    True depending on the client, is refused before anything is sent (on one Redis and on
    the cluster alike)."""

    async def scenario() -> None:
        async with open_redis(settings) as (client, _):
            key = "{packing}:check"  # both keys in one slot on a cluster
            try:
                await client.set(key, memoryview(b"\x00blob\xff"))
                assert await client.get(key) == b"\x00blob\xff"
                await client.hset(key + ":h", mapping={"f": 1.5, "n": 7, "t": "é"})
                assert await client.hgetall(key + ":h") == {
                    b"f": b"1.5",
                    b"n": b"7",
                    b"t": "é".encode(),
                }
                with pytest.raises(DataError):  # ours, or redis-py's own on a cluster
                    await client.set(key, True)
                assert await client.get(key) == b"\x00blob\xff"  # unchanged
            finally:
                await client.delete(key, key + ":h")

    anyio.run(scenario)
