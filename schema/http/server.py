"""The HTTP server ``lookalike serve`` runs: uvicorn, with the connection limits a server
facing the internet needs (connection_limits.py), enforced by a protocol class given through
uvicorn's ``http`` setting (uvicorn_compat.py, where every use of uvicorn's internals is).

With ``workers`` above one, uvicorn's own supervisor (``uvicorn.run(..., workers=N)``) runs that
many processes on one listening socket, restarts one that dies, and passes SIGTERM and Ctrl-C on
to every one. Each worker is spawned: it reads its settings from the environment and imports its
app and protocol class by name (``lookalike.schema.app:served_app``, ``HttpProtocol`` below),
because a class made at run time cannot be sent to it. What the workers share is made before
they start (``_shared``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import uvicorn

from lookalike.schema.http.connection_limits import ConnectionLimits
from lookalike.schema.http.uvicorn_compat import AnnouncingServer, limited_protocol
from lookalike.services.core.settings import Settings, get_settings
from lookalike.services.redis.embedded import EmbeddedRedis, kept_running, running_url

log = logging.getLogger("lookalike.http")

# Set by the supervisor for its workers: the directory where a worker whose start-up failed
# leaves its sentence (``record_start_failure``). uvicorn's supervisor stops when a worker
# fails to start, but returns as after Ctrl-C; this is how ``serve`` tells the two apart.
START_FAILURES = "LOOKALIKE_WORKER_START_FAILURES"
STARTUP_FAILURE = 3  # the exit code of a failed start-up, as uvicorn's one-process server's


def listening_socket(host: str, port: int) -> socket.socket:
    """The server's socket, bound and listening before the app loads anything: an address in
    use fails in a moment with its own error (OSError, EADDRINUSE), not after the start-up
    with uvicorn's exit code 3, which the command line gives a Redis it cannot use.

    Made as uvicorn makes the sockets it hands its workers: IPv6 for a host with a colon,
    SO_REUSEADDR (``socket.create_server`` sets it), uvicorn's default backlog."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=2048)


def connection_limits(settings: Settings) -> ConnectionLimits:
    """The bounds of one server process (each worker has its own: README, Workers)."""
    return ConnectionLimits(
        header_timeout=settings.header_timeout,
        body_timeout=settings.body_timeout,
        max_header_bytes=settings.max_header_bytes,
        max_connections=settings.max_connections,
        max_per_client=settings.max_connections_per_client,
    )


# Imported by name in every server process, the supervisor's workers included.
HttpProtocol = limited_protocol(connection_limits(get_settings()))


def serve(settings: Settings, listener: socket.socket, workers: int) -> None:
    """Serve on ``listener`` (``listening_socket``) until interrupted."""
    host, port = listener.getsockname()[:2]
    options: dict[str, Any] = {
        "app": "lookalike.schema.app:served_app",
        "factory": True,
        "host": host,
        "port": port,
        "log_config": None,
        "http": f"{__name__}:HttpProtocol",
        "ws": "none",  # no WebSocket endpoint: an upgrade request is an ordinary 4xx
        "timeout_keep_alive": settings.keep_alive_timeout,
        # No request outlives its deadline, so shutdown waits that long for them at most.
        "timeout_graceful_shutdown": max(1, round(settings.request_timeout)),
    }
    if workers == 1:
        AnnouncingServer(uvicorn.Config(**options)).run(sockets=[listener])
        return
    # uvicorn's supervisor binds the socket it hands its workers from an address (its public
    # API takes no socket): the address was just proven free, so it is given back for that.
    listener.close()
    with _shared(settings, workers):
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        log.info(
            f"lookalike is starting {workers} workers: the GraphQL API is at "
            f"http://{shown}:{port}/graphql",
            extra={"workers": workers},
        )
        uvicorn.run(**options, workers=workers)
        failures = sorted(Path(os.environ[START_FAILURES]).iterdir())
    if failures:
        # the worker logged its sentence; the supervisor exits as one process would have
        sys.exit(STARTUP_FAILURE)


def record_start_failure(message: str) -> None:
    """Under a supervisor, leave this worker's start-up failure where it will look."""
    where = os.environ.get(START_FAILURES)
    if where:
        Path(where, str(os.getpid())).write_text(message)


@contextlib.contextmanager
def _shared(settings: Settings, workers: int) -> Iterator[None]:
    """What the workers share, made before they start and removed after the last one stops:

    - their number, in the environment they inherit (``--workers`` overrides the setting),
      by which each takes its share of the face workers (``Settings.process_face_workers``);
    - a directory where a worker that fails to start says so (``record_start_failure``);
    - a fresh directory of metric files (prometheus_client's multiprocess mode reads
      ``PROMETHEUS_MULTIPROC_DIR`` as it is imported), so that /metrics sums every worker;
    - the embedded Redis, when REDIS_URL is unset: started here, workers find it by the data
      directory, and it outlives any one worker (a worker that started it would take it down
      with it, and two starting at once would race for the data directory's lock).
    """
    metrics_dir = tempfile.mkdtemp(prefix="lookalike-metrics-")
    failures_dir = tempfile.mkdtemp(prefix="lookalike-start-failures-")
    os.environ["LOOKALIKE_WORKERS"] = str(workers)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    os.environ[START_FAILURES] = failures_dir
    try:
        with contextlib.ExitStack() as stack:
            if not settings.redis_url and running_url(settings.data_dir) is None:
                stack.enter_context(kept_running(EmbeddedRedis(settings.data_dir)))
            yield
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
        shutil.rmtree(failures_dir, ignore_errors=True)
