"""Plain Redis servers on TCP, a primary and replicas of it (bench/replicas.py, the tests).

Each is the embedded Redis's server with the same modules and settings (services/
embedded_redis.py's ``server_command``), no persistence; a replica is started with
``--replicaof``. TCP, not a Unix socket: a replica must reach its primary by host and port.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from bench.scale import free_port
from lookalike.services.redis.embedded import server_command


@dataclass
class RedisNode:
    directory: Path
    replica_of: int | None = None  # the primary's port
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=10)

    def start(self) -> RedisNode:
        self.directory.mkdir(parents=True, exist_ok=True)
        options = [
            "--port", str(self.port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no",
            "--dir", str(self.directory), "--logfile", str(self.directory / "redis.log"),
        ]  # fmt: skip
        if self.replica_of is not None:
            options += ["--replicaof", "127.0.0.1", str(self.replica_of)]
        command = server_command(*options)
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while True:
            with contextlib.suppress(redis.ConnectionError, redis.BusyLoadingError):
                if self.client().ping():
                    return self
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"redis on {self.port} did not start: {self.log()}")
            time.sleep(0.05)

    def log(self) -> str:
        with contextlib.suppress(OSError):
            return (self.directory / "redis.log").read_text()[-2000:]
        return ""

    def kill(self) -> None:
        """Gone at once, as a crashed or unplugged server."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


def wait_in_sync(primary: RedisNode, replica: RedisNode, timeout: float = 30) -> None:
    """Until the replica's link is up and it has applied everything the primary wrote."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = replica.client().info("replication")
        offset = primary.client().info("replication")["master_repl_offset"]
        if info.get("master_link_status") == "up" and info.get("slave_repl_offset") == offset:
            return
        time.sleep(0.05)
    raise AssertionError(f"the replica did not catch up: {replica.log()}")
