"""The HTTP server ``lookalike serve`` runs: uvicorn, with the connection limits a server
facing the internet needs (connection_limits.py), enforced by a protocol class given through
uvicorn's ``http`` setting (uvicorn_compat.py, where every use of uvicorn's internals is)."""

from __future__ import annotations

import socket

import uvicorn

from lookalike.schema.http.connection_limits import ConnectionLimits
from lookalike.schema.http.uvicorn_compat import AnnouncingServer, limited_protocol
from lookalike.services.core.settings import Settings


def listening_socket(host: str, port: int) -> socket.socket:
    """The server's socket, bound and listening before the app loads anything: an address in
    use fails in a moment with its own error (OSError, EADDRINUSE), not after the start-up
    with uvicorn's exit code 3, which the command line gives a Redis it cannot use.

    Made as uvicorn makes the sockets it hands its workers: IPv6 for a host with a colon,
    SO_REUSEADDR (``socket.create_server`` sets it), uvicorn's default backlog."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=2048)


def serve(settings: Settings, listener: socket.socket) -> None:
    """Serve on ``listener`` (``listening_socket``) until interrupted."""
    host, port = listener.getsockname()[:2]
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
    AnnouncingServer(config).run(sockets=[listener])
