"""Connections that never finish their request, or send too much of it, are closed.

A real ``lookalike serve`` with short limits, driven through raw sockets the way a slowloris
client or a careless proxy would: every refusal is a JSON body with a code, and the server
goes on serving everyone else.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from lookalike.services.core.settings import Settings
from lookalike.services.redis.embedded import EmbeddedRedis
from tests.servers import Served, serving

HEADER_TIMEOUT = 1.0
BODY_TIMEOUT = 1.5
MAX_HEADER_BYTES = 4096
MAX_CONNECTIONS = 12
PER_CLIENT = 8
KEY = "connections-test-key"


@pytest.fixture(scope="module")
def server(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    folder: Path = tmp_path_factory.mktemp("connections")
    with serving(
        folder / "serve.log",
        REDIS_URL=settings.redis_url or "",
        LOOKALIKE_DATA_DIR=str(folder),
        LOOKALIKE_HEADER_TIMEOUT=str(HEADER_TIMEOUT),
        LOOKALIKE_MAX_HEADER_BYTES=str(MAX_HEADER_BYTES),
        LOOKALIKE_MAX_CONNECTIONS=str(MAX_CONNECTIONS),
        LOOKALIKE_MAX_CONNECTIONS_PER_CLIENT=str(PER_CLIENT),
        LOOKALIKE_BODY_TIMEOUT=str(BODY_TIMEOUT),
        LOOKALIKE_KEEP_ALIVE_TIMEOUT="1",
        LOOKALIKE_API_KEYS=KEY,
    ) as served:
        yield served


def _connect(server: Served, source: str = "127.0.0.1") -> socket.socket:
    host, port = server.base.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10, source_address=(source, 0))


def _quick_query_ms(server: Served) -> float:
    started = time.perf_counter()
    answer = httpx.post(f"{server.base}/graphql", json={"query": '{ book(id: "9") { title } }'})
    assert answer.status_code == 200
    return (time.perf_counter() - started) * 1000


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def _refusal(raw: bytes) -> tuple[int, str]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body)["errors"][0]["extensions"]["code"]


def test_headers_sent_a_byte_at_a_time_are_cut_off_at_the_deadline(server: Served) -> None:
    sock = _connect(server)
    started = time.monotonic()
    request = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: " + b"a" * 200
    closed_after = None
    for byte in request:
        try:
            sock.sendall(bytes([byte]))
        except (BrokenPipeError, ConnectionResetError):
            closed_after = time.monotonic() - started
            break
        time.sleep(0.05)
    raw = _read_all(sock)
    elapsed = closed_after or (time.monotonic() - started)
    assert _refusal(raw) == (408, "REQUEST_TIMEOUT")
    assert elapsed < HEADER_TIMEOUT + 5


def test_a_connection_that_sends_nothing_is_closed(server: Served) -> None:
    sock = _connect(server)
    started = time.monotonic()
    raw = _read_all(sock)
    assert _refusal(raw) == (408, "REQUEST_TIMEOUT")
    assert HEADER_TIMEOUT - 0.2 < time.monotonic() - started < HEADER_TIMEOUT + 3


def test_headers_over_the_limit_get_431(server: Served) -> None:
    sock = _connect(server)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Big: " + b"b" * 5000 + b"\r\n\r\n")
    assert _refusal(_read_all(sock)) == (431, "HEADERS_TOO_LARGE")


def test_a_request_line_no_parser_accepts_gets_a_json_400(server: Served) -> None:
    sock = _connect(server)
    sock.sendall(b"\x00\x01 not http at all\r\n\r\n")
    assert _refusal(_read_all(sock)) == (400, "BAD_REQUEST")


def test_an_idle_keep_alive_connection_is_closed(server: Served) -> None:
    sock = _connect(server)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
    time.sleep(0.3)
    first = sock.recv(65536)
    assert first.startswith(b"HTTP/1.1 200")
    started = time.monotonic()
    assert _read_all(sock) == b""  # the server closes it once idle
    assert time.monotonic() - started < 3


def test_connections_past_the_limit_get_503_and_the_rest_are_served(server: Served) -> None:
    """From several addresses up to the bound on all connections, then one more."""
    held = [_connect(server, f"127.0.0.{2 + n % 3}") for n in range(MAX_CONNECTIONS)]
    try:
        time.sleep(0.2)
        extra = _connect(server, "127.0.0.9")
        assert _refusal(_read_all(extra)) == (503, "SERVICE_UNAVAILABLE")
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.3)
    assert httpx.get(f"{server.base}/healthz").status_code == 200


def test_one_address_cannot_hold_every_connection(server: Served) -> None:
    held = [_connect(server, "127.0.0.5") for _ in range(PER_CLIENT)]
    try:
        time.sleep(0.2)
        one_more = _connect(server, "127.0.0.5")
        assert _refusal(_read_all(one_more)) == (503, "SERVICE_UNAVAILABLE")
        assert _quick_query_ms(server) < 1000  # others are served meanwhile
    finally:
        for sock in held:
            sock.close()


def test_a_body_sent_a_byte_at_a_time_is_cut_off(server: Served) -> None:
    sock = _connect(server)
    sock.sendall(
        b"POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100000\r\n\r\n"
    )
    started = time.monotonic()
    try:
        for _ in range(40):
            sock.sendall(b" ")
            time.sleep(0.1)
    except (BrokenPipeError, ConnectionResetError):
        pass
    raw = _read_all(sock)
    assert time.monotonic() - started < BODY_TIMEOUT + 3
    assert _refusal(raw) == (408, "REQUEST_TIMEOUT")


def test_a_body_still_trickling_after_the_answer_does_not_keep_the_connection(
    server: Served,
) -> None:
    sock = _connect(server)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n")
    started = time.monotonic()
    closed = False
    answer = b""
    while time.monotonic() - started < BODY_TIMEOUT + 5:
        try:
            sock.sendall(b"a")
            sock.settimeout(0.3)
            chunk = sock.recv(65536)
            if not chunk:
                closed = True
                break
            answer += chunk
        except TimeoutError:
            continue
        except (BrokenPipeError, ConnectionResetError):
            closed = True
            break
    assert answer.startswith(b"HTTP/1.1 200")
    assert closed


def test_an_endless_header_value_is_cut_at_the_size_limit(server: Served) -> None:
    sock = _connect(server)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
    started = time.monotonic()
    sent = 0
    try:
        while sent < 50_000_000 and time.monotonic() - started < 10:
            sock.sendall(b"a" * 65536)
            sent += 65536
    except (BrokenPipeError, ConnectionResetError):
        pass
    # refused as the limit passed: what the client could still write went to socket buffers
    # (a few MB on loopback), not into the server
    assert sent < 10_000_000
    assert time.monotonic() - started < 5
    assert _refusal(_read_all(sock)) == (431, "HEADERS_TOO_LARGE")


def test_a_chunked_trailer_is_not_read_as_headers(server: Served) -> None:
    """An Authorization in the trailer must not authorise the request."""
    body = b'{"query": "mutation { deletePerson(id: \\"nobody\\") }"}'
    request = (
        b"POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\nTrailer: Authorization\r\n\r\n"
        + f"{len(body):x}\r\n".encode()
        + body
        + b"\r\n0\r\n"
        + f"Authorization: Bearer {KEY}\r\n\r\n".encode()
    )
    sock = _connect(server, "127.0.0.7")
    sock.sendall(request)
    sock.settimeout(5)
    raw = b""
    while b"\r\n\r\n" not in raw or not raw.rstrip().endswith(b"}"):
        raw += sock.recv(65536)
    sock.close()
    answer = json.loads(raw.partition(b"\r\n\r\n")[2])
    assert answer["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


def test_start_up_ends_saying_where_the_api_is(server: Served) -> None:
    lines = [json.loads(line) for line in server.output().splitlines() if line.startswith("{")]
    started = [line["msg"] for line in lines if line["msg"].startswith("lookalike is ready")]
    assert started == [
        f"lookalike is ready: the GraphQL API is at {server.base}/graphql "
        "(open it in a browser for GraphiQL)"
    ]
    uvicorn_line = next(n for n, line in enumerate(lines) if "Uvicorn running" in line["msg"])
    ready_line = next(n for n, line in enumerate(lines) if line["msg"] in started)
    assert ready_line > uvicorn_line


@pytest.mark.parametrize("sent", ["the next request's first bytes", "its headers, half a body"])
def test_a_pipelined_request_behind_a_slow_answer_gets_that_answer_first(
    tmp_path: Path, sent: str
) -> None:
    """A client that pipelines (its next request's first bytes, or its headers and half its
    body, in the same packet) behind a request that outlasts the header and body deadlines
    (its Redis stopped, here): the slow request's answer comes first, then the next request
    gets its own time (a 408 written as the slow one ran was the only answer on the
    connection, read as the slow one's)."""
    redis = EmbeddedRedis(tmp_path / "redis")
    url = redis.start()
    assert redis.process is not None
    try:
        with serving(
            tmp_path / "serve.log",
            REDIS_URL=url,
            LOOKALIKE_DATA_DIR=str(tmp_path),
            LOOKALIKE_HEADER_TIMEOUT=str(HEADER_TIMEOUT),
            LOOKALIKE_BODY_TIMEOUT=str(BODY_TIMEOUT),
            LOOKALIKE_REDIS_TIMEOUT="1.5",
        ) as served:
            body = json.dumps({"query": '{ book(id: "9") { title } }'}).encode()
            head = (
                "POST /graphql HTTP/1.1\r\nhost: lookalike\r\n"
                f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
            )
            request = head.encode() + body
            sock = _connect(served)
            os.kill(redis.process.pid, signal.SIGSTOP)
            try:
                started = time.monotonic()
                partial = request[:15] if sent.startswith("the") else request[: len(head) + 5]
                sock.sendall(request + partial)
                raw = _read_all(sock)
                took = time.monotonic() - started
            finally:
                os.kill(redis.process.pid, signal.SIGCONT)
    finally:
        redis.stop()
    first, _, rest = raw.partition(b"\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 200"), raw[:200]
    answer, _, second = rest.partition(b"HTTP/1.1 ")
    assert json.loads(answer)["errors"][0]["extensions"]["code"] == "SERVICE_UNAVAILABLE"
    assert _refusal(b"HTTP/1.1 " + second) == (408, "REQUEST_TIMEOUT")
    assert took > 3 + HEADER_TIMEOUT  # the slow answer (two 1.5 s Redis deadlines), then 1 s+
