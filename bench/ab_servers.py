"""Two running lookalike servers on the same Redis, compared request for request: a change's
code (B) against the code before it (A).

    .venv/bin/python -m bench.ab_servers --a http://127.0.0.1:8001 --a-pid PID \\
        --b http://127.0.0.1:8002 --b-pid PID [--runs 3] [--seconds 4]

For each of the nested, single and search queries of bench/books.py and bench/search.py, the
two servers take turns in short windows (forwards and backwards, so that drift during a run
favours neither), each driven by the same closed-loop client. Printed per run: requests per
second, and the server process's CPU milliseconds per request read from /proc/PID/stat (its
user and system time; on a loaded shared machine, wall time measures the neighbours, CPU time
the code). The summary gives B / A, minimum, median and maximum over the runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
from pathlib import Path

from bench import http_client
from bench.books import NESTED, SINGLE, closed_loop

SEARCH = "query($text: String!) { searchBooks(text: $text, k: 5) { book { title } distance } }"
TEXTS = ["a detective in Victorian London", "a whale hunt at sea", "love and marriage in a village",
         "a boy wizard at school", "war and peace in Russia", "space travel to Mars"]  # fmt: skip
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime (fields 14, 15)


def requests(kind: str, url: str, ids: list[str]) -> list[bytes]:
    if kind == "nested":
        return [http_client.post(f"{url}/graphql", {"query": NESTED, "variables": {"first": 20}})]
    if kind == "single":
        return [
            http_client.post(f"{url}/graphql", {"query": SINGLE, "variables": {"id": i}})
            for i in ids
        ]
    return [
        http_client.post(f"{url}/graphql", {"query": SEARCH, "variables": {"text": t}})
        for t in TEXTS
    ]


async def window(
    url: str, pid: int, batch: list[bytes], seconds: float, width: int
) -> tuple[float, float]:
    """Requests a second and server CPU milliseconds a request, over one window."""
    before = cpu_seconds(pid)
    done = await closed_loop(url, batch, seconds, width)
    return done / seconds, (cpu_seconds(pid) - before) / max(done, 1) * 1000


def spread(values: list[float]) -> str:
    return f"min {min(values):.3f} median {statistics.median(values):.3f} max {max(values):.3f}"


async def main(args: argparse.Namespace) -> None:
    ids = [str(n) for n in range(1, 200, 7)]
    sides = {"A": (args.a, args.a_pid), "B": (args.b, args.b_pid)}
    for kind in args.kinds:
        width = 1 if kind == "nested" else args.concurrency
        batches = {side: requests(kind, url, ids) for side, (url, _) in sides.items()}
        for side, (url, pid) in sides.items():  # warm: connections, caches
            await window(url, pid, batches[side], 1.0, width)
        speed, cpu = [], []
        for run in range(args.runs):
            totals = {side: [0.0, 0.0] for side in sides}
            order = ["A", "B", "B", "A"] * (args.windows // 2)
            for side in order:
                url, pid = sides[side]
                rate, ms = await window(url, pid, batches[side], args.seconds, width)
                totals[side][0] += rate / len(order) * 2
                totals[side][1] += ms / len(order) * 2
            (ra, ca), (rb, cb) = totals["A"], totals["B"]
            speed.append(rb / ra)
            cpu.append(cb / ca)
            print(f"{kind:>6} run {run + 1}: A {ra:7.1f} req/s {ca:6.2f} ms CPU/req | "
                  f"B {rb:7.1f} req/s {cb:6.2f} ms CPU/req | B/A speed {rb / ra:.3f}, "
                  f"CPU {cb / ca:.3f}", flush=True)  # fmt: skip
        print(f"{kind:>6}: B/A requests/s {spread(speed)}; CPU/request {spread(cpu)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--a", required=True, help="the server on the code before")
    parser.add_argument("--a-pid", type=int, required=True)
    parser.add_argument("--b", required=True, help="the server on the changed code")
    parser.add_argument("--b-pid", type=int, required=True)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=2.0, help="per window")
    parser.add_argument("--windows", type=int, default=4, help="per side per run (even)")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--kinds", nargs="+", default=["nested", "single", "search"])
    asyncio.run(main(parser.parse_args()))
