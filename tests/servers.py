"""Real ``lookalike serve`` processes, for what only a real process shows (start-up races,
signals, a browser or a Node client talking HTTP to it)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Served:
    process: subprocess.Popen[bytes]
    base: str  # http://127.0.0.1:<port>
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.base}/readyz").status_code == 200:
                    return
            assert self.process.poll() is None, f"the server exited:\n{self.output()}"
            time.sleep(0.2)
        raise AssertionError(f"not ready within {timeout} s:\n{self.output()}")

    def shutdown(self, timeout: float = 60) -> None:
        """Stop as an orchestrator does (SIGTERM): the server finishes and cleans up (and
        uvicorn then ends by the signal it caught)."""
        self.process.terminate()
        self.process.wait(timeout)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def start_server(log: Path, **environment: str) -> Served:
    """``lookalike serve`` on a free port; LOOKALIKE_* settings come from ``environment``."""
    return _start(log, environment, own_session=False)


def start_server_in_own_group(log: Path, **environment: str) -> Served:
    """``start_server``, in a process group of its own, which a test can send Ctrl-C's
    SIGINT to as a terminal does."""
    return _start(log, environment, own_session=True)


def _start(log: Path, environment: dict[str, str], *, own_session: bool) -> Served:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "LOOKALIKE_API_KEYS"}
    env |= {"LOOKALIKE_PORT": str(port), **environment}
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "lookalike.schema.cli", "serve"],
            env=env,
            stderr=out,
            start_new_session=own_session,
        )
    return Served(process, f"http://127.0.0.1:{port}", log)


@contextlib.contextmanager
def serving(log: Path, **environment: str) -> Iterator[Served]:
    served = start_server(log, **environment)
    try:
        served.wait_ready()
        yield served
    finally:
        served.stop()
