"""The HTTP server ``lookalike serve`` runs: uvicorn, with the limits a server facing the
internet needs, announcing where the API is once it listens.

uvicorn closes idle keep-alive connections, but it has no deadline for a request's headers
(a client sending one byte a second holds a connection for ever: slowloris), no bound on their
size with its fast parser (5 MB of headers were accepted), no bound on open connections
short of a count of busy tasks, and it answers a malformed request in plain text. This
protocol class, given to uvicorn through its ``http`` setting, adds:

- a deadline for the request line and headers, from the first byte of each request (and
  from the connection's opening, so a silent connection is closed too): 408;
- a bound on the request line and headers together: 431;
- a bound on open connections: past it a new connection gets 503 and is closed;
- a JSON body with a code on every one of these refusals and on uvicorn's own 400.

It overrides uvicorn's parser callbacks (``on_message_begin``, ``on_url``, ``on_header``,
``on_headers_complete``); tests/test_connections.py drives real sockets against a real
server, so an uvicorn release that changed them would fail there.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from lookalike.services.settings import Settings

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


def limited_protocol(
    *, header_timeout: float, max_header_bytes: int, max_connections: int
) -> type[HttpToolsProtocol]:
    """The protocol class for uvicorn's ``http`` setting, with these limits."""

    class Limited(LimitedHttpProtocol):
        pass

    Limited.header_timeout = header_timeout
    Limited.max_header_bytes = max_header_bytes
    Limited.max_connections = max_connections
    return Limited


class LimitedHttpProtocol(HttpToolsProtocol):
    header_timeout: float = 10.0
    max_header_bytes: int = 32 * 1024
    max_connections: int = 1000

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_deadline: asyncio.TimerHandle | None = None
        self._header_bytes = 0
        self._refused = False

    # --- connection -------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            self._refuse(503, "SERVICE_UNAVAILABLE", "too many open connections; try again")
            return
        self._start_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_deadline()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if not self._refused:
            super().data_received(data)

    # --- parser callbacks -------------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_bytes = 0
        self._start_deadline()

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        if not self._refused:
            super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        if not self._refused:
            super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if self._refused:
            return
        self._stop_deadline()
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if not self._refused:
            super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        self._refuse(400, "BAD_REQUEST", msg)

    # --- limits -----------------------------------------------------------------------------

    def _count(self, size: int) -> None:
        self._header_bytes += size
        if self._header_bytes > self.max_header_bytes and not self._refused:
            self._refuse(
                431,
                "HEADERS_TOO_LARGE",
                f"the request line and headers are over {self.max_header_bytes:,} bytes",
            )

    def _start_deadline(self) -> None:
        if self._header_deadline is None:
            self._header_deadline = self.loop.call_later(self.header_timeout, self._too_slow)

    def _stop_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _too_slow(self) -> None:
        self._header_deadline = None
        self._refuse(
            408, "REQUEST_TIMEOUT", f"the request's headers took over {self.header_timeout:g} s"
        )

    def _refuse(self, status: int, code: str, message: str) -> None:
        self._refused = True
        self._stop_deadline()
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
            header_timeout=settings.header_timeout,
            max_header_bytes=settings.max_header_bytes,
            max_connections=settings.max_connections,
        ),
        ws="none",  # no WebSocket endpoint: an upgrade request is an ordinary 4xx
        timeout_keep_alive=settings.keep_alive_timeout,
        # No request outlives its deadline, so shutdown waits that long for them at most.
        timeout_graceful_shutdown=max(1, round(settings.request_timeout)),
    )
    _AnnouncingServer(config).run()
