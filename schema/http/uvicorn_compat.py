"""Every use lookalike makes of uvicorn's undocumented parts: its httptools protocol class,
subclassed to enforce the connection limits (connection_limits.py says which and why), and its
server's start-up, extended to announce where the API is.

uvicorn documents the ``http`` setting as taking a protocol class, but not the class's
callbacks nor the state they share; so each override and each attribute read below says what
it relies on. Checked with uvicorn 0.55.0 and httptools 0.9.0 (pyproject.toml bounds uvicorn
below 0.56). tests/schema/http/test_connections.py drives real sockets against a real server:
an uvicorn release that changed any of these fails there.

Relied on, in HttpToolsProtocol (uvicorn/protocols/http/httptools_impl.py):

- its constructor signature (``config, server_state, app_state``), passed through untouched;
- the transport callbacks ``connection_made``, ``connection_lost``, ``data_received``,
  ``pause_writing``, ``resume_writing``, and ``on_response_complete`` (called by the
  RequestResponseCycle when an answer is out): each calls uvicorn's own first or last;
- httptools' parser callbacks as uvicorn implements them (``on_message_begin``, ``on_url``,
  ``on_header``, ``on_headers_complete``, ``on_body``, ``on_message_complete``), and
  ``send_400_response``, which uvicorn calls with the parser's error on a malformed request;
- its attributes: ``app`` (the ASGI app, read as each request's task starts), ``client``,
  ``connections`` (the server's set of open protocols), ``cycle`` (the RequestResponseCycle
  of the request being read or answered; its ``scope``, ``response_started``,
  ``response_complete``, ``disconnected``, ``message_event``), ``pipeline`` (the deque of
  ``(cycle, app)`` queued behind an answer), ``headers`` (the request's header list, complete
  in ``on_headers_complete``), ``parser`` (httptools' ``should_upgrade``), ``loop``,
  ``transport``.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from lookalike.schema.http.connection_limits import (
    REQUEST_LINE_BYTE,
    ChunkedEnd,
    ConnectionLimits,
    empty_line_end,
    refusal_bytes,
)
from lookalike.schema.http.observability import observe_refusal

log = logging.getLogger("lookalike.http")

ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]


def limited_protocol(limits: ConnectionLimits) -> type[HttpToolsProtocol]:
    """The protocol class for uvicorn's ``http`` setting, with these limits."""

    class Limited(LimitedHttpProtocol):
        pass

    Limited.limits = limits
    return Limited


class LimitedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the connection limits (connection_limits.py)."""

    limits = ConnectionLimits()
    per_client: ClassVar[Counter[str]] = Counter()  # open connections by client address

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # relies on: the constructor's arguments, passed through; ``self.app`` set by it
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
        # relies on: uvicorn reading ``self.app`` when it starts a request's task
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
        # relies on: uvicorn's connection_made adding this protocol to ``self.connections``
        # (the server's set of open ones) and setting ``self.client``
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

    def connection_lost(self, exc: Exception | None) -> None:  # relies on: called once
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
        # relies on: uvicorn's data_received feeding each call's bytes to its parser at once
        # (so a read cut in pieces is parsed piece by piece), and ``self.parser``
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
                found = REQUEST_LINE_BYTE.search(data, start, limit)
                first = found.start() if found else limit
            end = empty_line_end(data, first, limit, self._tail) if first < limit else -1
            return end if end >= 0 else limit
        if self._chunked is not None:
            end = self._chunked.end(data, start, self._tail)
            return end if end >= 0 else len(data)
        return min(len(data), start + self._body_left) if self._body_left else len(data)

    # relies on: uvicorn's flow control being driven by these two transport callbacks
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
        # relies on: the RequestResponseCycle calling it as an answer ends, and ``self.cycle``
        # being the request answered or one queued after it in ``self.pipeline``
        super().on_response_complete()
        if self._refusal is not None and (self.cycle is None or self.cycle.response_complete):
            self._write_refusal()  # the last answer owed before it is out
        elif self._phase is not None:  # a request read behind this answer: its turn, its time
            self._begin(self._phase[0])
            self._arm()

    # --- parser callbacks -------------------------------------------------------------------
    # relies on: httptools calling these on the protocol, uvicorn's versions building the
    # request (scope, headers, RequestResponseCycle) in them, in this order per request

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
        # relies on: ``self.headers`` complete here, and uvicorn's on_headers_complete making
        # the request's cycle (started, or queued in ``self.pipeline``)
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
        # relies on: uvicorn calling it with the parser's error on a malformed request
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
        # relies on: the cycle's ``scope``, ``disconnected`` (its receive then answers
        # http.disconnect and its send writes nothing), ``message_event`` (wakes its receive),
        # ``response_started``; ``self.pipeline`` entries being ``(cycle, app)``
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


class AnnouncingServer(uvicorn.Server):
    """uvicorn's server, whose last start-up line says where the API is.

    Relies on ``Server.startup(sockets)`` (undocumented) being where uvicorn listens and logs
    "Uvicorn running on", except on sockets it was given (lookalike binds its socket before
    the app loads: http/server.py): that line is then logged here with uvicorn's own
    ``_log_started_message(listeners)``, as for a socket it bound; and on ``self.started``
    and ``self.config`` after it."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and sockets is not None:
            self._log_started_message(sockets)
        if self.started:
            config = self.config
            host = "127.0.0.1" if config.host in ("0.0.0.0", "::") else config.host
            log.info(
                f"lookalike is ready: the GraphQL API is at http://{host}:{config.port}/graphql "
                "(open it in a browser for GraphiQL)"
            )
