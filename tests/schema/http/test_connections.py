"""Connections that never finish their request, or send too much of it, are closed.

A real ``lookalike serve`` with short limits, driven through raw sockets the way a slowloris
client or a careless proxy would: every refusal is a JSON body with a code, and the server
goes on serving everyone else.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httptools
import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lookalike.schema.http.connection_limits import ChunkedEnd, empty_line_end
from lookalike.services.core.settings import Settings
from lookalike.services.redis.embedded import EmbeddedRedis
from tests.conftest import error_codes, metric, redis_dump
from tests.photos import ENROLL, IDENTIFY, PERSON, PREFLIGHT, encoded, orl_image
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
    time.sleep(0.2)
    assert "Exception in ASGI application" not in server.output()  # its app was told, quietly


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
    # the slow answer (a 1.5 s Redis deadline), then the next request's own time from there
    assert took > 1.5 + min(HEADER_TIMEOUT, BODY_TIMEOUT)


# --- requests that arrive in reads of any shape ---------------------------------------------

TITLE = '{ book(id: "9") { title } }'
KEYED = {"authorization": f"Bearer {KEY}", **PREFLIGHT}


def _raw(method: str, path: str, headers: dict[str, str] | None = None, **body: Any) -> bytes:
    """The bytes httpx would send for this request (its headers as it writes them)."""
    request = httpx.Request(method, f"http://lookalike{path}", headers=headers, **body)
    content = request.read()
    lines = [f"{method} {request.url.raw_path.decode()} HTTP/1.1"]
    lines += [f"{name}: {value}" for name, value in request.headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + content


def _head_length(request: bytes) -> int:
    return request.index(b"\r\n\r\n") + 4


def _padded(request: bytes, head_bytes: int) -> bytes:
    """The request with an X-Pad header that makes its line and headers ``head_bytes`` long."""
    line, _, rest = request.partition(b"\r\n")
    pad = head_bytes - _head_length(request) - len(b"x-pad: \r\n")
    assert pad >= 0
    return line + b"\r\nx-pad: " + b"p" * pad + b"\r\n" + rest


def _query(padding: int = 0) -> bytes:
    body = {"query": TITLE, "variables": {"padding": "x" * padding} if padding else {}}
    return _raw("POST", "/graphql", json=body)


def _photo(size: int, person: str = "s3") -> bytes:
    """A real ORL face as a JPEG, padded to ``size`` bytes with a comment (cameras pad their
    JPEGs with metadata the same way)."""
    plain = encoded(orl_image(person, 1), "JPEG", quality=95)
    return encoded(orl_image(person, 1), "JPEG", quality=95, comment=b"x" * (size - len(plain) - 4))


def _upload(query: str, photo: bytes, **variables: Any) -> bytes:
    operations = {"query": query, "variables": {**variables, "image": None}}
    return _raw(
        "POST",
        "/graphql",
        headers=KEYED,
        data={"operations": json.dumps(operations), "map": json.dumps({"0": ["variables.image"]})},
        files={"0": ("photo.jpg", photo, "image/jpeg")},
    )


def _answers(sock: socket.socket, count: int) -> list[tuple[int, Any]]:
    """The next ``count`` answers on a connection, in order (status, JSON body); fewer if the
    server closes it first."""
    sock.settimeout(20)
    buffer = b""
    answers: list[tuple[int, Any]] = []
    while len(answers) < count:
        head_end = buffer.find(b"\r\n\r\n")
        if head_end >= 0:
            head = buffer[:head_end].decode("latin-1").split("\r\n")
            length = next(
                int(line.partition(":")[2])
                for line in head
                if line.lower().startswith("content-length:")
            )
            end = head_end + 4 + length
            if len(buffer) >= end:
                answers.append((int(head[0].split(" ")[1]), json.loads(buffer[head_end + 4 : end])))
                buffer = buffer[end:]
                continue
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not chunk:
            break
        buffer += chunk
    return answers


def _send(server: Served, *writes: bytes, answers: int = 1) -> list[tuple[int, Any]]:
    """Each write in its own read on the server (the client pauses between them)."""
    sock = _connect(server)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        for n, write in enumerate(writes):
            if n:
                time.sleep(0.05)
            sock.sendall(write)
        return _answers(sock, answers)
    finally:
        sock.close()


def _person(server: Served, person: str) -> Any:
    return httpx.post(
        f"{server.base}/graphql", json={"query": PERSON, "variables": {"id": person}}
    ).json()


def _title(answer: tuple[int, Any]) -> str:
    status, body = answer
    assert status == 200, body
    title: str = body["data"]["book"]["title"]
    return title


@pytest.mark.parametrize("writes", ["one write", "headers, then body"])
def test_requests_larger_than_the_header_limit_are_answered_alike_in_one_write_or_two(
    server: Served, writes: str
) -> None:
    """What nginx and most proxies send: a request's headers and body in one write. Only the
    header bytes count against the header limit, however the bytes arrive."""
    person = f"one-write-{writes[0]}"
    requests = [
        _query(padding=40_000),
        _upload(ENROLL, _photo(60_000, "s3" if writes == "one write" else "s4"), id=person),
    ]
    answers = []
    for request in requests:
        cut = len(request) if writes == "one write" else _head_length(request)
        answers += (
            _send(server, request[:cut], request[cut:]) if request[cut:] else _send(server, request)
        )
    assert len(requests[0]) > 40_000
    assert len(requests[1]) > 60_000
    assert _title(answers[0]) == "Transformers: The Ultimate Guide"
    status, enrolled = answers[1]
    assert (status, enrolled["data"]) == (200, {"enrollFace": {"id": person, "name": None,
                                                               "faceCount": 1}})  # fmt: skip
    assert _person(server, person)["data"]["person"]["faceCount"] == 1


def test_headers_at_the_limit_pass_however_they_are_split(server: Served) -> None:
    request = _padded(_query(padding=2_000), MAX_HEADER_BYTES)
    head = _head_length(request)
    cuts = [0, 1, head // 2, *range(head - 6, head + 3), len(request) - 1]
    for cut in cuts:
        writes = [part for part in (request[:cut], request[cut:]) if part]
        answers = _send(server, *writes)
        assert len(answers) == 1, cut
        assert _title(answers[0]) == "Transformers: The Ultimate Guide", cut


def test_headers_one_byte_over_the_limit_are_refused_however_they_are_split(
    server: Served,
) -> None:
    request = _padded(_query(padding=2_000), MAX_HEADER_BYTES + 1)
    head = _head_length(request)
    for cut in [0, head // 2, head - 2, head - 1, head, head + 1]:
        writes = [part for part in (request[:cut], request[cut:]) if part]
        answers = _send(server, *writes)
        assert [(s, error_codes(b)) for s, b in answers] == [(431, ["HEADERS_TOO_LARGE"])], cut


def _chunked(body: bytes, size: int) -> bytes:
    head = (
        b"POST /graphql HTTP/1.1\r\nhost: lookalike\r\ncontent-type: application/json\r\n"
        b"transfer-encoding: chunked\r\n\r\n"
    )
    chunks = [body[n : n + size] for n in range(0, len(body), size)]
    return head + b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"


def test_pipelined_requests_in_one_write_are_each_answered_in_turn(server: Served) -> None:
    """Four requests in one write (and cut into two at 16 places), each with its own header
    section under the limit and all of them together well over it: a body, a GET, a chunked
    body whose JSON holds empty lines (it is cut in 7-byte chunks), and a request whose headers
    are at the limit."""
    spaced = b'{"query":\r\n\r\n"{ book(id: \\"9\\") { title } }",\r\n\r\n"variables": {}}'
    requests = [
        _query(padding=3_000),
        _raw("GET", f"/graphql?query={TITLE}"),
        _chunked(spaced, 7),
        _padded(_query(padding=3_000), MAX_HEADER_BYTES),
    ]
    stream = b"".join(requests)
    for cut in [len(stream), *range(1, len(stream), len(stream) // 15)]:
        writes = [part for part in (stream[:cut], stream[cut:]) if part]
        answers = _send(server, *writes, answers=len(requests))
        assert [_title(answer) for answer in answers] == ["Transformers: The Ultimate Guide"] * 4


def test_a_body_and_the_next_requests_first_bytes_in_one_read(server: Served) -> None:
    """A request whose body shares a read with the first half of the next request's headers
    (which are at the limit), then the rest: the count of those headers starts at their
    first byte, not at the read's."""
    first = _query(padding=10_000)
    second = _padded(_query(padding=1_000), MAX_HEADER_BYTES)
    half = _head_length(second) // 2
    answers = _send(server, first + second[:half], second[half:], answers=2)
    assert [_title(answer) for answer in answers] == ["Transformers: The Ultimate Guide"] * 2
    chunked_first = _chunked(json.dumps({"query": TITLE, "pad": "y" * 9_000}).encode(), 1000)
    answers = _send(server, chunked_first + second[:half], second[half:], answers=2)
    assert [_title(answer) for answer in answers] == ["Transformers: The Ultimate Guide"] * 2


def test_a_request_refused_for_its_headers_is_never_run(server: Served, settings: Settings) -> None:
    """An enrolment whose headers are over the limit, sent whole (alone, and pipelined behind
    a request that is answered first): 431, and nothing is stored."""
    before = redis_dump(settings.redis_url or "", "face*")
    enrol = _padded(_upload(ENROLL, _photo(20_000, "s5"), id="refused-431"), MAX_HEADER_BYTES + 100)
    alone = _send(server, enrol)
    behind = _send(server, _query() + enrol, answers=2)
    assert [(s, error_codes(b)) for s, b in alone] == [(431, ["HEADERS_TOO_LARGE"])]
    assert _title(behind[0]) == "Transformers: The Ultimate Guide"
    assert (behind[1][0], error_codes(behind[1][1])) == (431, ["HEADERS_TOO_LARGE"])
    time.sleep(0.5)  # a request that ran anyway would have stored its face by now
    assert error_codes(_person(server, "refused-431")) == ["PERSON_NOT_FOUND"]
    assert redis_dump(settings.redis_url or "", "face*") == before


def test_a_request_refused_after_its_headers_never_runs(server: Served, settings: Settings) -> None:
    """llhttp reads a whole header section before it refuses a Transfer-Encoding it does not
    know; uvicorn has started the request's app by then. Neither this GET, which would store a
    persisted query, nor an enrolment with a malformed chunked body reaches it."""
    query = "query NeverRun { genres { name } }"
    digest = hashlib.sha256(query.encode()).hexdigest()
    extensions = json.dumps({"persistedQuery": {"version": 1, "sha256Hash": digest}})
    url = "/graphql?" + urlencode({"query": query, "extensions": extensions})
    request = _raw("GET", url, headers={"transfer-encoding": "gzip"})
    answers = _send(server, request)
    assert [(s, error_codes(b)) for s, b in answers] == [(400, ["BAD_REQUEST"])]
    before = redis_dump(settings.redis_url or "", "face*")
    enrol = _upload(ENROLL, _photo(20_000, "s6"), id="refused-400")
    head = _head_length(enrol)
    broken = (
        enrol[:head].replace(b"content-length", b"x-was-length")
        .replace(b"\r\n\r\n", b"\r\ntransfer-encoding: chunked\r\n\r\n")
        + b"%x\r\n%s\r\n" % (len(enrol) - head, enrol[head:])
        + b"zz\r\n\r\n"
    )  # fmt: skip
    answers = _send(server, broken)
    assert [(s, error_codes(b)) for s, b in answers] == [(400, ["BAD_REQUEST"])]
    time.sleep(0.5)
    hash_only = _raw("GET", "/graphql?" + urlencode({"extensions": extensions}))
    assert error_codes(_send(server, hash_only)[0][1]) == ["PERSISTED_QUERY_NOT_FOUND"]
    assert error_codes(_person(server, "refused-400")) == ["PERSON_NOT_FOUND"]
    assert redis_dump(settings.redis_url or "", "face*") == before


def test_a_request_line_over_the_limit_is_414(server: Served) -> None:
    answers = _send(server, _raw("GET", "/graphql?query=" + "{" * MAX_HEADER_BYTES))
    assert [(s, error_codes(b)) for s, b in answers] == [(414, ["URI_TOO_LONG"])]


def test_one_keep_alive_client_identifies_a_large_photo_again_and_again(server: Served) -> None:
    """The report: from one httpx client, most identifications of a 55 KB JPEG were 431."""
    photo = _photo(55_000, "s7")
    operations = json.dumps({"query": IDENTIFY, "variables": {"image": None, "k": 1}})
    form = {"operations": operations, "map": json.dumps({"0": ["variables.image"]})}
    with httpx.Client(base_url=server.base, headers=KEYED) as client:
        statuses = [
            client.post("/graphql", data=form, files={"0": ("p.jpg", photo, "image/jpeg")})
            for _ in range(20)
        ]
    assert [
        (r.status_code, r.json()["data"]["identifyFace"]["facesDetected"]) for r in statuses
    ] == [(200, 1)] * 20


def _refusals(server: Served) -> dict[tuple[str, str], float]:
    text = httpx.get(f"{server.base}/metrics").text
    kinds = [("400", "BAD_REQUEST"), ("408", "REQUEST_TIMEOUT"), ("414", "URI_TOO_LONG"),
             ("431", "HEADERS_TOO_LARGE"), ("503", "SERVICE_UNAVAILABLE")]  # fmt: skip
    return {
        (status, code): metric(text, "lookalike_http_refusals_total", status=status, code=code)
        for status, code in kinds
    }


def test_every_refusal_the_connection_layer_makes_is_counted(server: Served) -> None:
    before = _refusals(server)
    _send(server, b"\x00\x01 not http at all\r\n\r\n")
    _send(server, _raw("GET", "/graphql?query=" + "{" * MAX_HEADER_BYTES))
    _send(server, _padded(_query(), MAX_HEADER_BYTES + 1))
    assert _refusal(_read_all(_connect(server))) == (408, "REQUEST_TIMEOUT")
    held = [_connect(server, "127.0.0.6") for _ in range(PER_CLIENT)]
    try:
        time.sleep(0.2)
        assert _refusal(_read_all(_connect(server, "127.0.0.6"))) == (503, "SERVICE_UNAVAILABLE")
    finally:
        for sock in held:
            sock.close()
    after = _refusals(server)
    assert {kind: after[kind] - before[kind] for kind in before} == dict.fromkeys(before, 1.0)


def test_a_head_answer_carries_no_body_on_the_wire(server: Served) -> None:
    """HEAD and then GET on one connection: the GET's answer follows the HEAD's headers at
    once (a body after them would be read as the GET's answer)."""
    head = _raw("HEAD", f"/graphql?query={TITLE}")
    get = _raw("GET", f"/graphql?query={TITLE}", headers={"connection": "close"})
    sock = _connect(server)
    sock.sendall(head + get)
    first, _, rest = _read_all(sock).partition(b"\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 200")
    assert b"content-length: " in first
    assert rest.startswith(b"HTTP/1.1 200")
    assert json.loads(rest.partition(b"\r\n\r\n")[2])["data"]["book"]["title"]


def _empty_line_end_read_bytewise(data: bytes, start: int, end: int, before: bytes) -> int:
    """The same answer read one byte at a time: a line feed after a line feed, or after a
    line feed and a carriage return, ends an empty line."""
    seen = before + data
    for n in range(len(before) + start, len(before) + end):
        if seen[n] == 10 and (seen[n - 1 : n] == b"\n" or seen[max(n - 2, 0) : n] == b"\n\r"):
            return n + 1 - len(before)
    return -1


@given(
    before=st.binary(max_size=2).map(lambda b: bytes(b"\r\nx"[c % 3] for c in b)),
    data=st.binary(max_size=12).map(lambda b: bytes(b"\r\nx"[c % 3] for c in b)),
    bounds=st.tuples(st.integers(0, 12), st.integers(0, 12)),
)
def test_where_a_piece_ends_agrees_with_a_bytewise_reading(
    before: bytes, data: bytes, bounds: tuple[int, int]
) -> None:
    """Where the connection layer cuts a read (the end of the first empty line not yet fed),
    whatever the bytes before the cut and in the reads before this one."""
    start, end = sorted(min(bound, len(data)) for bound in bounds)
    expected = _empty_line_end_read_bytewise(data, start, end, before)
    assert empty_line_end(data, start, end, before) == expected


class _MessageEnds:
    """httptools' own account of where each message ends, fed one byte at a time."""

    def __init__(self) -> None:
        self.ends: list[int] = []
        self.fed = 0

    def on_message_complete(self) -> None:
        self.ends.append(self.fed)


@given(
    chunks=st.lists(st.binary(min_size=1, max_size=40), max_size=6),
    extension=st.sampled_from([b"", b";a=b", b';name="quoted"']),
    trailer=st.sampled_from([b"", b"X-Trailer: 1\r\n", b"A: 1\r\nB: 2\r\n"]),
    zeros=st.integers(1, 3),
    reads=st.lists(st.integers(1, 60), max_size=8),
)
def test_a_chunked_body_ends_where_httptools_ends_it(
    chunks: list[bytes], extension: bytes, trailer: bytes, zeros: int, reads: list[int]
) -> None:
    """Where the connection layer cuts after a chunked body, whatever the chunks hold (empty
    lines too), however the reads are cut: where llhttp completes the message."""
    head = b"POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n"
    body = b"".join(b"%x%s\r\n%s\r\n" % (len(c), extension, c) for c in chunks)
    body += b"0" * zeros + extension + b"\r\n" + trailer + b"\r\n"
    after = b"GET / HTTP/1.1\r\n\r\n"
    seen = _MessageEnds()
    parser = httptools.HttpRequestParser(seen)
    for byte in head + body + after:
        seen.fed += 1
        parser.feed_data(bytes([byte]))
    assert seen.ends == [len(head + body), len(head + body + after)]
    framing, stream, fed, found = ChunkedEnd(), body + after, 0, -1
    for size in [*reads, len(stream)]:
        read = stream[fed : fed + size]
        end = framing.end(read, 0, (head + stream[:fed])[-2:])
        if end >= 0:
            found = fed + end
            break
        fed += len(read)
    assert found == len(body)
