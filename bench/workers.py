"""``lookalike serve --workers 2`` against one process, and a fresh server's first search.

    .venv/bin/python -m bench.workers [--runs 3] [--seconds 6] [--concurrency 16]
    .venv/bin/python -m bench.workers --only throughput     # or --only first-search

Both parts start their own embedded Redis in a temporary directory and their own servers on
it (the shipped catalogue, loaded by the first), so nothing else needs to run.

1. Throughput: ``book(id) { similar(k: 5) }`` requests per second from ``--concurrency``
   closed-loop clients (bench/http_client.py, one keep-alive connection each, spread over
   ``--client-processes`` processes), against a
   server of one process and one of ``--workers`` workers, both running all along. Each run
   measures both sides in windows, in turn forwards and backwards, so that the machine's drift
   favours neither. Printed per run: req/s each and the ratio; then its minimum, median and
   maximum; beside each side, the cores its processes kept busy (their CPU time over the wall
   time: one process cannot pass one core, workers can, when the machine has them to give) and
   the machine's load average. Then the memory (RSS) of every process of the workers' server,
   models loaded.
2. First search: a fresh server (``LOOKALIKE_READY_WAITS_FOR_MODELS=true``, and then the
   default) is started ``--runs`` times; as soon as /readyz answers 200, one searchBooks on a
   text never searched, then ``LATER`` more (each a new text, so each runs the model). With
   the default, also once the log says the background load and warm-up are done
   ("loaded"): a deploy's first user, no search having run before. Printed: the first
   search's time, the later ones' median, and their ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench import http_client
from bench.ab_servers import cpu_seconds
from bench.books import SINGLE, closed_loop, free_port
from lookalike.services.redis.embedded import EmbeddedRedis

SEARCH = "query($text: String!) { searchBooks(text: $text, k: 5) { book { title } distance } }"
LATER = 5
IDS = [str(n) for n in (9, 15, 26, 41, 57, 68, 72, 95, 117, 130, 152, 173)]


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    base: str
    log: Path

    def wait_ready(self, timeout: float = 300) -> float:
        """Seconds from now to /readyz's first 200."""
        started = time.perf_counter()
        while time.perf_counter() - started < timeout:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.base}/readyz").status_code == 200:
                    return time.perf_counter() - started
            if self.process.poll() is not None:
                raise SystemExit(f"the server exited:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.05)
        raise SystemExit(f"not ready in {timeout} s:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(120)


@contextlib.contextmanager
def server(redis_url: str, folder: Path, workers: int, **environment: str) -> Iterator[Server]:
    port = free_port()
    log = folder / f"serve-{port}.log"
    env = {**os.environ, "REDIS_URL": redis_url, "LOOKALIKE_DATA_DIR": str(folder)}
    env |= {"LOOKALIKE_PORT": str(port), "LOOKALIKE_WORKERS": str(workers), **environment}
    # the catalogue's load on this shared 2-core machine: a chunk's writes took over 2 s
    env.setdefault("LOOKALIKE_REDIS_TIMEOUT", "10")
    env.pop("LOOKALIKE_API_KEYS", None)
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "lookalike.schema.cli", "serve"], env=env, stderr=out
        )
    running = Server(process, f"http://127.0.0.1:{port}", log)
    try:
        yield running
    finally:
        if process.poll() is None:
            running.stop()


def descendants(pid: int) -> list[int]:
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                parent = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
                parents.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024


def kind(pid: int, supervisor: int) -> str:
    command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    if pid == supervisor:
        return "supervisor"
    if "resource_tracker" in command:
        return "multiprocessing resource tracker"
    parent = int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])
    return "API worker" if parent == supervisor else "face worker"


def wait_model(log: Path, count: int, line: str = "text model ready", timeout: float = 300) -> None:
    """Until ``count`` processes have logged that their text model is loaded (or ``line``)."""
    deadline = time.monotonic() + timeout
    while log.read_text().count(line) < count:
        if time.monotonic() > deadline:
            raise SystemExit(f"the text model did not load:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)


def throughput(args: argparse.Namespace, redis_url: str, folder: Path) -> None:
    with server(redis_url, folder, 1) as one:
        one.wait_ready()  # the catalogue is loaded: the workers start on it
        with server(redis_url, folder, args.workers) as many:
            many.wait_ready()
            measure(args, one, many)


def _client(url: str, requests: list[bytes], seconds: float, concurrency: int) -> int:
    return asyncio.run(closed_loop(url, requests, seconds, concurrency))


WRK_SCRIPT = """
bodies = {%s}
n = 0
request = function()
  n = n %% #bodies + 1
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, bodies[n])
end
"""


def drive_wrk(url: str, seconds: float, args: argparse.Namespace) -> int:
    """Requests answered in ``seconds`` by wrk (C, one thread, ``args.concurrency``
    keep-alive connections, the same ``IDS`` in turn). On a machine of two cores the clients'
    own CPU is taken from the servers: wrk takes a tenth of what Python clients take, so the
    figure is the servers' and not the clients' (README, Workers)."""
    bodies = ", ".join(
        "[[" + json.dumps({"query": SINGLE, "variables": {"id": i}}) + "]]" for i in IDS
    )
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        script.write(WRK_SCRIPT % bodies)
        script.flush()
        # whole seconds (--seconds / --windows)
        command = ["wrk", "-t1", f"-c{args.concurrency}", f"-d{max(1, round(seconds))}s"]
        done = subprocess.run(
            [*command, "-s", script.name, url], capture_output=True, text=True, check=True
        )
    if "Non-2xx" in done.stdout:
        raise SystemExit(f"wrk saw errors:\n{done.stdout}")
    line = next(x for x in done.stdout.splitlines() if "requests in" in x)
    return int(line.split()[0])


def drive(url: str, requests: list[bytes], seconds: float, args: argparse.Namespace) -> int:
    """Requests answered in ``seconds`` by ``args.concurrency`` clients: wrk's when it is
    installed (``--client wrk``), else Python's, spread over ``args.client_processes``
    processes: one client process is itself one core at most, and on a busy machine one share
    of the cores, less than two workers can answer."""
    if args.client == "wrk":
        return drive_wrk(url, seconds, args)
    processes = args.client_processes
    share = [args.concurrency // processes + (n < args.concurrency % processes)
             for n in range(processes)]  # fmt: skip
    with concurrent.futures.ProcessPoolExecutor(processes) as pool:
        done = [pool.submit(_client, url, requests, seconds, n) for n in share]
        return sum(future.result() for future in done)


def measure(args: argparse.Namespace, one: Server, many: Server) -> None:
    wait_model(one.log, 1)
    wait_model(many.log, args.workers)  # neither side is loading a model while measured
    sides = {
        "1 process": one,
        f"{args.workers} workers": many,
    }
    requests = {
        name: [
            http_client.post(f"{s.base}/graphql", {"query": SINGLE, "variables": {"id": i}})
            for i in IDS
        ]
        for name, s in sides.items()
    }
    window = args.seconds / args.windows
    clients = "wrk (one thread)" if args.client == "wrk" else f"{args.client_processes} processes"
    print(
        f"Throughput: book(id) {{ similar(k: 5) }}, {args.concurrency} concurrent clients "
        f"in {clients}, {args.windows} alternating windows of {window:g} s per side per run"
    )
    names = list(sides)
    print(
        f"  {'run':>4} {names[0] + ' req/s':>18} {'cores':>6} {names[1] + ' req/s':>18} "
        f"{'cores':>6} {'ratio':>7}  load average"
    )
    ratios = []
    for run in range(1, args.runs + 1):
        counts = dict.fromkeys(sides, 0)
        busy = dict.fromkeys(sides, 0.0)  # CPU seconds of the server's processes
        for w in range(args.windows):
            for name in names if w % 2 == 0 else reversed(names):
                url = f"{sides[name].base}/graphql"
                pids = [sides[name].process.pid, *descendants(sides[name].process.pid)]
                before = sum(cpu_seconds(pid) for pid in pids)
                counts[name] += drive(url, requests[name], window, args)
                busy[name] += sum(cpu_seconds(pid) for pid in pids) - before
        rates = [counts[name] / args.seconds for name in names]
        cores = [busy[name] / args.seconds for name in names]
        ratios.append(rates[1] / rates[0])
        load = " ".join(f"{n:.1f}" for n in os.getloadavg())
        print(
            f"  {run:>4} {rates[0]:>18.0f} {cores[0]:>6.2f} {rates[1]:>18.0f} {cores[1]:>6.2f} "
            f"{ratios[-1]:>6.2f}x  {load}"
        )
    print(
        f"  {args.workers} workers / 1 process: min {min(ratios):.2f}x, "
        f"median {statistics.median(ratios):.2f}x, max {max(ratios):.2f}x"
    )
    print(f"Memory of the {args.workers}-worker server's processes, models loaded (RSS):")
    supervisor = many.process.pid
    for pid in [supervisor, *descendants(supervisor)]:
        print(f"  {pid:>8} {kind(pid, supervisor):<34} {rss_mb(pid):>6.0f} MB")


def first_search(args: argparse.Namespace, redis_url: str, folder: Path) -> None:
    print(
        f"First search: a fresh server, one searchBooks as soon as /readyz is 200, then {LATER} "
        "more (every text new: each runs the model)"
    )
    print(f"  {'setting':<26} {'run':>4} {'ready s':>8} {'first ms':>9} "
          f"{'later ms':>9} {'ratio':>7}")  # fmt: skip
    # (setting, whether the first search waits for the log's "text model ready"); the last
    # is a deploy's first user arriving once the background load is done, without a search
    # having run before
    for waits, loaded in (("true", False), ("false", False), ("false", True)):
        ratios = []
        for run in range(1, args.runs + 1):
            with server(redis_url, folder, 1, LOOKALIKE_READY_WAITS_FOR_MODELS=waits) as fresh:
                ready = fresh.wait_ready()
                if loaded:
                    wait_model(fresh.log, 1, "text model warm")
                times = []
                with httpx.Client(timeout=120) as client:
                    for _ in range(1 + LATER):
                        text = f"{uuid.uuid4().hex[:6]} a storm at sea and a lost ship"
                        body = {"query": SEARCH, "variables": {"text": text}}
                        started = time.perf_counter()
                        answer = client.post(f"{fresh.base}/graphql", json=body).json()
                        times.append((time.perf_counter() - started) * 1000)
                        if "errors" in answer:  # a search waiting past its deadline: TIMEOUT
                            codes = [e["extensions"]["code"] for e in answer["errors"]]
                            print(f"  (search {len(times)}: {', '.join(codes)})")
                later = statistics.median(times[1:])
                ratios.append(times[0] / later)
                label = f"READY_WAITS_FOR_MODELS={waits}" + (", loaded" if loaded else "")
                print(f"  {label:<26} {run:>4} {ready:>8.1f} {times[0]:>9.0f} {later:>9.0f} "
                      f"{ratios[-1]:>6.1f}x")  # fmt: skip
        print(
            f"  {'':<26} first / later: min {min(ratios):.1f}x, "
            f"median {statistics.median(ratios):.1f}x, max {max(ratios):.1f}x"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8, help="per side per run")
    parser.add_argument("--windows", type=int, default=4, help="alternating windows a run")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--client-processes", type=int, default=2)
    parser.add_argument("--only", choices=("throughput", "first-search"))
    parser.add_argument(
        "--client",
        choices=("wrk", "python"),
        default="wrk" if shutil.which("wrk") else "python",
        help="the load generator (wrk when installed: apt install wrk)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-workers-") as tmp:
        folder = Path(tmp)
        redis_server = EmbeddedRedis(folder / "redis")
        redis_url = redis_server.start()
        try:
            if args.only in (None, "throughput"):
                throughput(args, redis_url, folder)
            if args.only in (None, "first-search"):
                first_search(args, redis_url, folder)
        finally:
            redis_server.stop()


if __name__ == "__main__":
    main()
