"""A real 3-shard Redis Cluster for the tests, from ../shared/redis-cluster (see its BUILD.md).

Each node is the embedded Redis's server binary with the RediSearch coordinator build, whose
FT.SEARCH on any node asks every shard and merges: what Redis 8's query engine does on a
cluster. The nodes take free ports found here (a node also listens on its port + 10000 for
the cluster bus), and are stopped by their recorded pids.
"""

from __future__ import annotations

import contextlib
import random
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[1].parent / "shared" / "redis-cluster"


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
    """A cluster of ``masters`` shards for the block; yields a node's URL."""
    for _ in range(3):  # a port taken between the probe and the start: try other ports
        first = free_ports(masters)
        started = subprocess.run(
            [str(SCRIPTS / "start-cluster"), sys.executable, str(directory), str(first),
             str(masters)],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        if started.returncode == 0:
            break
        stop_cluster(directory)
    else:
        raise RuntimeError(f"start-cluster failed: {started.stdout} {started.stderr}")
    try:
        yield started.stdout.strip().splitlines()[-1]
    finally:
        stop_cluster(directory)


def stop_cluster(directory: Path) -> None:
    subprocess.run([str(SCRIPTS / "stop-cluster"), str(directory)], check=False, timeout=60)


def node_pids(directory: Path) -> dict[int, int]:
    """Each node's port and process id."""
    return {
        int(pid_file.parent.name.removeprefix("n")): int(pid_file.read_text())
        for pid_file in directory.glob("n*/pid")
    }
