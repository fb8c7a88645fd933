"""The HTTP server ``lookalike serve`` runs: uvicorn, with the limits a server facing the
internet needs, announcing where the API is once it listens.

uvicorn closes idle keep-alive connections, but it has no deadline for a request's headers
or body (a client sending one byte a second holds a connection for ever: slowloris, and every
byte resets the keep-alive timer), no bound on their size with its fast parser (an unfinished
header of 100 MB was buffered whole), no bound on open connections short of a count of busy
tasks, it reads a chunked body's trailer as more request headers, and it answers a malformed
request in plain text. This protocol class, given to uvicorn through its ``http`` setting, adds:

- a deadline for the request line and headers, from the first byte of each request (and from
  the connection's opening, so a silent connection is closed too), and one for the body: 408;
- a bound on the raw bytes of each request's line and headers: 414 when the request line
  alone passes it, 431 otherwise;
- a bound on open connections, in all and from one address: past it, 503 and closed;
- a deadline for a client that does not read its answer (the connection is dropped);
- trailer fields are not headers;
- a JSON body with a code on every refusal, and on uvicorn's own 400, each counted in
  /metrics; a refused request never reaches the app, and a refusal waits for the answers
  owed to the requests pipelined before it.

Counting a request's header bytes needs to know where in a read its header section ends,
and httptools reports no positions. So a read is handed to the parser in pieces that end
where a request's header section or body ends: at the header section's empty line (empty
lines before a request line end nothing), after the bytes a Content-Length body still lacks,
after a chunked body's last chunk and trailer (its framing followed chunk by chunk: cutting
at every empty line would cost a parser call per empty line in the chunks' data), and at the
header limit. Within one piece a request is in one phase, so the pieces fed while reading
headers are exactly its header bytes, whether they came in one read with its body, with the
requests pipelined before it, or split anywhere across reads.

It overrides uvicorn's protocol callbacks (``connection_made``, ``data_received``, the parser's
``on_*``, ``on_response_complete``, ``pause_writing``) and reads its per-request state
(``cycle``, ``pipeline``, ``app``, ``headers``); tests/schema/http/test_connections.py drives
real sockets against a real server, so an uvicorn release that changed them would fail there.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from lookalike.schema.http.observability import observe_refusal
from lookalike.services.core.settings import Settings

log = logging.getLogger("lookalike.http")

REASONS = {400: "Bad Request", 408: "Request Timeout", 414: "URI Too Long",
           431: "Request Header Fields Too Large", 503: "Service Unavailable"}  # fmt: skip
ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]


def refusal_bytes(status: int, code: str, message: str) -> bytes:
    body = json.dumps({"errors": [{"message": message, "extensions": {"code": code}}]}).encode()
    head = (
        f"HTTP/1.1 {status} {REASONS[status]}\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


# An empty line: a line feed, maybe a carriage return, a line feed. llhttp wants CRLF; taking
# a bare LF too only adds places to cut, which is harmless.
_EMPTY_LINE = re.compile(rb"\n\r?\n")
_REQUEST_LINE_BYTE = re.compile(rb"[^\r\n]")  # llhttp skips empty lines before a request
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,16}")


def empty_line_end(data: bytes, start: int, end: int, before: bytes) -> int:
    """The offset just past the first empty line that ends within ``data[start:end]``, or -1.
    The bytes before ``start`` were fed already; ``before`` holds the last bytes fed before
    ``data``, for a line feed that came in an earlier read."""
    if start < 2 and before[-1:] in (b"\n", b"\r"):
        prior = (before + data[:start])[-2:]
        found = _first_ending_after(prior + data[start : min(end, start + 2)], 0, len(prior))
        if found >= 0:
            return start + found - len(prior)
    return _first_ending_after(data, max(start - 2, 0), start, end)


def _first_ending_after(data: bytes, start: int, after: int, end: int | None = None) -> int:
    """The end of the first empty line in ``data[start:end]`` that ends past ``after``, or -1
    (the lines overlap: in three line feeds, the second empty line ends one byte later)."""
    end = len(data) if end is None else end
    match = _EMPTY_LINE.search(data, start, end)
    while match is not None and match.end() <= after:
        match = _EMPTY_LINE.search(data, match.start() + 1, end)
    return match.end() if match is not None else -1


class ChunkedEnd:
    """Follows a chunked body's framing over the bytes fed, to say where the body ends: just
    past the empty line after its last chunk and trailer. Cutting at every empty line would
    also find it, but chunk data full of empty lines would then cost a parser call every two
    bytes; this costs a few steps a chunk, whatever the chunks hold. llhttp refuses framing
    that breaks the rules (400), so on every body it accepts the two agree."""

    def __init__(self) -> None:
        self.left = 0  # bytes of the current chunk's data and its CRLF still to come
        self.line = b""  # the start of a chunk-size line split across reads
        self.last = False  # past the last chunk's size line: in the trailer

    def end(self, data: bytes, start: int, before: bytes) -> int:
        """Move over ``data[start:]``; the offset where the body ends in it, or -1."""
        position, size = start, len(data)
        while position < size:
            if self.last:
                return empty_line_end(data, position, size, before)
            if self.left:
                step = min(self.left, size - position)
                self.left -= step
                position += step
                continue
            line_end = data.find(b"\n", position)
            if line_end < 0:
                self.line = (self.line + data[position:])[:32]
                return -1
            digits = _CHUNK_SIZE.match(self.line + data[position : min(line_end, position + 32)])
            self.line = b""
            position = line_end + 1
            length = int(digits.group(), 16) if digits else 0
            if not length:
                self.last = True
                continue
            step = min(length + 2, size - position)  # its data, then CRLF
            self.left = length + 2 - step
            position += step
        return -1


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    max_header_bytes: int = 32 * 1024
    max_connections: int = 1000
    max_per_client: int = 128  # 0: no bound


def limited_protocol(limits: ConnectionLimits) -> type[HttpToolsProtocol]:
    """The protocol class for uvicorn's ``http`` setting, with these limits."""

    class Limited(LimitedHttpProtocol):
        pass

    Limited.limits = limits
    return Limited


class LimitedHttpProtocol(HttpToolsProtocol):
    limits = ConnectionLimits()
    per_client: ClassVar[Counter[str]] = Counter()  # open connections by client address

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._armed: tuple[str, float] | None = None  # the phase and start it was set for
        self._phase: tuple[str, float] | None = None  # "headers" or "body", and since when
        self._stalled: asyncio.TimerHandle | None = None
        self._in_headers = True  # reading a request line and headers (or waiting for one)
        self._header_bytes = 0  # bytes fed to the parser while reading them
        self._in_request_line = True  # no line feed among them yet: a long URL is 414
        self._begun = False  # the parser has seen this request's first byte
        self._body_left: int | None = 0  # of a Content-Length body; None: chunked
        self._chunked: ChunkedEnd | None = None
        self._tail = b""  # the last bytes fed, for an empty line split across reads
        self._refused = False
        self._refusal: bytes | None = None  # written once the answers owed before it are out
        self._refused_scope: object = None  # a refused request whose app task may be queued
        self._earlier: RequestResponseCycle | None = None  # the request before this one
        self._counted: str | None = None
        self.app = self._admit(self.app)

    def _admit(self, app: ASGIApp) -> ASGIApp:
        """uvicorn starts a request's app task as its headers end; a request refused later in
        the same read (say, a Transfer-Encoding llhttp rejects after the headers) must not run
        when that task gets its turn."""

        async def admitted(scope: Any, receive: Any, send: Any) -> None:
            if scope is not self._refused_scope:
                await app(scope, receive, send)

        return admitted

    # --- connection -------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        host = self.client[0] if self.client else ""
        self._counted = host
        self.per_client[host] += 1
        if len(self.connections) > self.limits.max_connections:
            self._refuse(503, "SERVICE_UNAVAILABLE", "too many open connections; try again")
        elif 0 < self.limits.max_per_client < self.per_client[host]:
            self._refuse(503, "SERVICE_UNAVAILABLE", "too many open connections from you")
        else:
            self._begin("headers")  # a connection that sends nothing is closed too
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop()
        if self._stalled is not None:
            self._stalled.cancel()
        if self._counted is not None:
            self.per_client[self._counted] -= 1
            if self.per_client[self._counted] <= 0:
                del self.per_client[self._counted]
            self._counted = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        size = len(data)
        view = memoryview(data)
        start = 0
        while start < size and not self._refused:
            end = self._piece_end(data, start)
            if end == start:  # the header section is at the limit and goes on
                self._headers_too_large()
                break
            if self._in_headers:
                # httptools keeps an unfinished header in memory until its line ends: these
                # bytes are counted before they are parsed, so 100 MB of one header value is
                # cut at the limit, not buffered
                self._header_bytes += end - start
                if self._in_request_line and data.find(b"\n", start, end) >= 0:
                    self._in_request_line = False
            # httptools parses a memoryview in place: a body is not copied to be cut
            super().data_received(data if end - start == size else view[start:end])  # type: ignore[arg-type]
            start = end
            if not self._refused and self.parser.should_upgrade():
                break  # uvicorn drops the rest of a read after an upgrade request
        if not self._refused:
            self._tail = (self._tail + data[-2:])[-2:]
            self._arm()

    def _piece_end(self, data: bytes, start: int) -> int:
        """Where the next piece for the parser ends: no request changes phase inside one."""
        if self._in_headers:
            limit = min(len(data), start + self.limits.max_header_bytes - self._header_bytes)
            first = start
            if not self._begun:  # empty lines before a request end nothing: they count, uncut
                found = _REQUEST_LINE_BYTE.search(data, start, limit)
                first = found.start() if found else limit
            end = empty_line_end(data, first, limit, self._tail) if first < limit else -1
            return end if end >= 0 else limit
        if self._chunked is not None:
            end = self._chunked.end(data, start, self._tail)
            return end if end >= 0 else len(data)
        return min(len(data), start + self._body_left) if self._body_left else len(data)

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._stalled is None:  # a client that does not read its answer
            self._stalled = self.loop.call_later(self.limits.body_timeout, self.transport.abort)

    def resume_writing(self) -> None:
        if self._stalled is not None:
            self._stalled.cancel()
            self._stalled = None
        super().resume_writing()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._refusal is not None and (self.cycle is None or self.cycle.response_complete):
            self._write_refusal()  # the last answer owed before it is out

    # --- parser callbacks -------------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_headers = True
        self._begun = True
        self._begin("headers")

    def on_url(self, url: bytes) -> None:
        if not self._refused:
            super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        # after the headers, a chunked body's trailer: its fields are not request headers
        # (an Authorization there must not be read as one)
        if self._in_headers and not self._refused:
            super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if self._refused:
            return
        self._in_headers = False
        self._body_left, self._chunked = 0, None
        for name, value in self.headers:  # llhttp has refused a malformed or doubled length
            if name == b"transfer-encoding":
                self._body_left, self._chunked = None, ChunkedEnd()
                break
            if name == b"content-length":
                self._body_left = int(value)
        self._earlier = self.cycle
        self._begin("body")
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if self._body_left:
            self._body_left -= len(body)
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._refused:
            return
        self._phase = None  # until the next request's first byte (keep-alive: uvicorn's)
        self._in_headers = True  # the next bytes are the next request's
        self._header_bytes = 0
        self._in_request_line = True
        self._begun = False
        self._body_left, self._chunked = 0, None
        super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        self._refuse(400, "BAD_REQUEST", msg)

    # --- limits -----------------------------------------------------------------------------

    def _headers_too_large(self) -> None:
        limit = self.limits.max_header_bytes
        if self._in_request_line:
            self._refuse(414, "URI_TOO_LONG", f"the request line is over {limit:,} bytes")
        else:
            message = f"the request line and headers are over {limit:,} bytes"
            self._refuse(431, "HEADERS_TOO_LARGE", message)

    def _headers_too_slow(self) -> None:
        self._deadline = self._armed = None
        if self.cycle is not None and not self.cycle.response_complete:
            self._wait_for_turn("headers")  # behind the answer self.cycle is making
            return
        timeout = self.limits.header_timeout
        self._refuse(408, "REQUEST_TIMEOUT", f"the request's headers took over {timeout:g} s")

    def _body_too_slow(self) -> None:
        self._deadline = self._armed = None
        if self.pipeline:  # queued (uvicorn stops reading) behind an earlier answer
            self._wait_for_turn("body")
            return
        timeout = self.limits.body_timeout
        self._refuse(408, "REQUEST_TIMEOUT", f"the request's body took over {timeout:g} s")

    def _wait_for_turn(self, phase: str) -> None:
        """A pipelined request behind an answer still being made: its phase starts again, so
        it gets its time once that answer is out (a 408 now would be the only answer on the
        connection, read as the earlier request's)."""
        self._begin(phase)
        self._arm()

    def _begin(self, phase: str) -> None:
        self._phase = (phase, self.loop.time())

    def _arm(self) -> None:
        """The deadline of the phase the request is in once the bytes received are parsed.
        Set here rather than as each phase begins: a request that arrives whole (most do)
        begins and ends both phases within one call and needs no timer at all."""
        if self._phase == self._armed:
            return
        self._stop()
        if self._phase is None:
            return
        phase, since = self._phase
        if phase == "headers":
            timeout, expire = self.limits.header_timeout, self._headers_too_slow
        else:
            timeout, expire = self.limits.body_timeout, self._body_too_slow
        self._deadline = self.loop.call_at(since + timeout, expire)
        self._armed = self._phase

    def _stop(self) -> None:
        self._armed = None
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _refuse(self, status: int, code: str, message: str) -> None:
        """Refuse the request being read: nothing more is read, its app never runs (or, if its
        headers had started it, never gets the rest of its body), and the refusal is written
        once the answers to the requests before it are."""
        if self._refused:
            return
        self._refused = True
        self._stop()
        observe_refusal(status, code, self.client[0] if self.client else None)
        refused = None if self._in_headers else self.cycle
        if refused is not None:
            self._refused_scope = refused.scope
            refused.disconnected = True  # its receive answers http.disconnect, its send nothing
            refused.message_event.set()
            if refused.response_started:  # answered already (say, 413): nothing more to say
                self.transport.close()
                return
            for queued in [entry for entry in self.pipeline if entry[0] is refused]:
                self.pipeline.remove(queued)
            self.cycle = self._earlier  # type: ignore[assignment]  # what is owed ends there
        self._refusal = refusal_bytes(status, code, message)
        if self.cycle is None or self.cycle.response_complete:
            self._write_refusal()

    def _write_refusal(self) -> None:
        refusal, self._refusal = self._refusal, None
        if refusal is not None and not self.transport.is_closing():
            self.transport.write(refusal)
            self.transport.close()


class _AnnouncingServer(uvicorn.Server):
    """uvicorn's server, whose last start-up line says where the API is."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            config = self.config
            host = "127.0.0.1" if config.host in ("0.0.0.0", "::") else config.host
            log.info(
                f"lookalike is ready: the GraphQL API is at http://{host}:{config.port}/graphql "
                "(open it in a browser for GraphiQL)"
            )


def serve(settings: Settings, host: str, port: int) -> None:
    config = uvicorn.Config(
        "lookalike.schema.app:create_app",
        factory=True,
        host=host,
        port=port,
        log_config=None,
        http=limited_protocol(
            ConnectionLimits(
                header_timeout=settings.header_timeout,
                body_timeout=settings.body_timeout,
                max_header_bytes=settings.max_header_bytes,
                max_connections=settings.max_connections,
                max_per_client=settings.max_connections_per_client,
            )
        ),
        ws="none",  # no WebSocket endpoint: an upgrade request is an ordinary 4xx
        timeout_keep_alive=settings.keep_alive_timeout,
        # No request outlives its deadline, so shutdown waits that long for them at most.
        timeout_graceful_shutdown=max(1, round(settings.request_timeout)),
    )
    _AnnouncingServer(config).run()
