"""Connections that never finish their request, or send too much of it, are closed.

A real ``lookalike serve`` with short limits, driven through raw sockets the way a slowloris
client or a careless proxy would: every refusal is a JSON body with a code, and the server
goes on serving everyone else.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from lookalike.services.settings import Settings
from tests.servers import Served, serving

HEADER_TIMEOUT = 1.0
MAX_HEADER_BYTES = 4096
MAX_CONNECTIONS = 12


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
        LOOKALIKE_KEEP_ALIVE_TIMEOUT="1",
    ) as served:
        yield served


def _connect(server: Served) -> socket.socket:
    host, port = server.base.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


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
    held = [_connect(server) for _ in range(MAX_CONNECTIONS)]
    try:
        time.sleep(0.2)
        extra = _connect(server)
        assert _refusal(_read_all(extra)) == (503, "SERVICE_UNAVAILABLE")
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.3)
    assert httpx.get(f"{server.base}/healthz").status_code == 200


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
