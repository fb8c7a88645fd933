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
- a bound on the raw bytes of the request line and headers, counted as they arrive: 431;
- a bound on open connections, in all and from one address: past it, 503 and closed;
- a deadline for a client that does not read its answer (the connection is dropped);
- trailer fields are not headers;
- a JSON body with a code on every refusal, and on uvicorn's own 400.

It overrides uvicorn's protocol callbacks (``connection_made``, ``data_received``, the parser's
``on_*``, ``pause_writing``); tests/schema/http/test_connections.py drives real sockets against
a real server, so an uvicorn release that changed them would fail there.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections import Counter
from dataclasses import dataclass
from typing import Any, ClassVar

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from lookalike.services.core.settings import Settings

log = logging.getLogger("lookalike.http")

REASONS = {400: "Bad Request", 408: "Request Timeout", 431: "Request Header Fields Too Large",
           503: "Service Unavailable"}  # fmt: skip


def refusal_bytes(status: int, code: str, message: str) -> bytes:
    body = json.dumps({"errors": [{"message": message, "extensions": {"code": code}}]}).encode()
    head = (
        f"HTTP/1.1 {status} {REASONS[status]}\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


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
        self._header_bytes = 0  # raw bytes received while reading them
        self._refused = False
        self._counted: str | None = None

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
        if self._refused:
            return
        reading_headers = self._in_headers
        super().data_received(data)
        if reading_headers and self._in_headers and not self._refused:
            # httptools keeps an unfinished header in memory until its line ends: count the
            # raw bytes, so 100 MB of one header value is cut at the limit, not buffered
            self._header_bytes += len(data)
            if self._header_bytes > self.limits.max_header_bytes:
                self._headers_too_large()
        if not self._refused:
            self._arm()

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._stalled is None:  # a client that does not read its answer
            self._stalled = self.loop.call_later(self.limits.body_timeout, self.transport.abort)

    def resume_writing(self) -> None:
        if self._stalled is not None:
            self._stalled.cancel()
            self._stalled = None
        super().resume_writing()

    # --- parser callbacks -------------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_headers = True
        self._header_bytes = 0
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
        self._begin("body")
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._refused:
            return
        self._phase = None  # until the next request's first byte (keep-alive: uvicorn's)
        self._in_headers = True  # the next bytes are the next request's
        self._header_bytes = 0
        super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        self._refuse(400, "BAD_REQUEST", msg)

    # --- limits -----------------------------------------------------------------------------

    def _headers_too_large(self) -> None:
        self._refuse(
            431,
            "HEADERS_TOO_LARGE",
            f"the request line and headers are over {self.limits.max_header_bytes:,} bytes",
        )

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
        cycle = getattr(self, "cycle", None)
        if cycle is not None and getattr(cycle, "response_started", False):
            self._refused = True  # answered already (say, 413): the rest is not waited for
            self.transport.close()
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
        self._refused = True
        self._stop()
        if not self.transport.is_closing():
            self.transport.write(refusal_bytes(status, code, message))
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
