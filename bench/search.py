"""Benchmark searchBooks, first time and cached, and what filters cost.

Run it against a running server (``lookalike serve``):

    .venv/bin/python -m bench.search [--url http://127.0.0.1:8000] [--rounds 40] [--runs 3]

1. searchBooks in each mode (SEMANTIC, KEYWORD, HYBRID) with a text never seen (embedded by
   the model) against the same text again (its vector cached), and a book's similar(k: 10)
   in the same rounds: p50 per run, the ratio cached / first and cached / similar, and the
   spread of the ratios over the runs (this machine drifts by a third within minutes: the
   modes and the similar requests alternate within each round). Target: cached <= 0.1x first.
2. Book similar(k: 10) without a filter, with a broad filter (genres: fantasy) and with a
   selective one (a genre of ~10 books, in a year range): p50/p95 and ratios to no filter.

Requests go through bench/http_client (the lean keep-alive client bench.books uses) on one
connection: httpx adds about 0.6 ms a request on this machine and the standard library's
http.client about 0.5 ms, a fixed cost on both sides of a ratio that says nothing about the
server.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from typing import Any

import numpy as np

from bench import http_client

SEARCH = """query($text: String!, $mode: SearchMode!) {
  searchBooks(text: $text, k: 10, mode: $mode) { distance book { title } } }"""
MODES = ("SEMANTIC", "KEYWORD", "HYBRID")
SIMILAR = """query($id: ID!, $filter: BookFilter) {
  book(id: $id) { similar(k: 10, filter: $filter) { distance book { title } } } }"""
TOPICS = [
    "a detective hunts a killer through the fog of a port city",
    "two sisters inherit a farm haunted by their grandmother's secrets",
    "a starship crew wakes from cryosleep to find the ship empty",
    "a young witch runs a delivery service on her broomstick",
    "soldiers trapped behind enemy lines during a long winter",
]


def pct(samples: list[float], q: float) -> float:
    return float(np.percentile(samples, q))


def timed(client: http_client.BlockingConnection, query: str, **variables: Any) -> float:
    started = time.perf_counter()
    client.post(query, **variables)
    return (time.perf_counter() - started) * 1000


def row(name: str, samples: list[float], base: list[float] | None = None) -> str:
    ratio = f"{pct(samples, 50) / pct(base, 50):6.2f}x" if base else ""
    return f"  {name:34} {pct(samples, 50):8.2f} {pct(samples, 95):8.2f} {ratio}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    client = http_client.BlockingConnection(args.url.rstrip("/") + "/graphql")
    timed(client, SEARCH, text="load the model " + uuid.uuid4().hex, mode="SEMANTIC")
    book_ids = [
        e["node"]["id"]
        for e in client.post("{ books(first: 100) { edges { node { id } } } }")["data"]["books"][
            "edges"
        ]
    ]
    print(
        f"searchBooks(k: 10), a search-box text (~10 words) never seen, then the same again, "
        f"each mode in turn, and similar(k: 10) of a book in the same rounds; {args.rounds} "
        f"rounds a run, {args.runs} runs"
    )
    print(
        f"  {'run':>3} {'mode':9} {'first p50':>10} {'cached p50':>11} {'similar p50':>12}"
        f" {'cached/first':>13} {'cached/similar':>15}"
    )
    ratios: dict[str, list[float]] = {mode: [] for mode in MODES}
    for run in range(1, args.runs + 1):
        first: dict[str, list[float]] = {mode: [] for mode in MODES}
        cached: dict[str, list[float]] = {mode: [] for mode in MODES}
        similar: list[float] = []
        for n in range(args.rounds):
            for mode in MODES:
                # a fresh text each time: never in the cache, whatever ran before
                text = f"{TOPICS[n % len(TOPICS)]} ({uuid.uuid4().hex[:8]})"
                first[mode].append(timed(client, SEARCH, text=text, mode=mode))
                cached[mode].append(timed(client, SEARCH, text=text, mode=mode))
            similar.append(timed(client, SIMILAR, id=book_ids[n % len(book_ids)], filter=None))
        for mode in MODES:
            f, c, m = pct(first[mode], 50), pct(cached[mode], 50), pct(similar, 50)
            ratios[mode].append(c / f)
            print(
                f"  {run:3} {mode:9} {f:8.2f} ms {c:8.2f} ms {m:9.2f} ms {c / f:12.2f}x"
                f" {c / m:14.2f}x"
            )
    for mode in MODES:
        r = sorted(ratios[mode])
        print(
            f"  {mode}: cached / first min {r[0]:.2f}x, median {statistics.median(r):.2f}x, "
            f"max {r[-1]:.2f}x over {args.runs} runs (target <= 0.1x)"
        )

    genres = client.post("{ genres { name count } }")
    rare = next(g["name"] for g in reversed(genres["data"]["genres"]) if g["count"] >= 10)
    filters: dict[str, dict[str, Any] | None] = {
        "no filter": None,
        "genres: [fantasy]": {"genres": ["fantasy"]},
        f"genres: [{rare}], 1990-2020": {"genres": [rare], "yearFrom": 1990, "yearTo": 2020},
    }
    results: dict[str, list[float]] = {name: [] for name in filters}
    for _ in range(max(1, args.rounds // 20)):
        for book_id in book_ids:
            for name, given in filters.items():  # interleaved: same machine state for all
                results[name].append(timed(client, SIMILAR, id=book_id, filter=given))
    base = results["no filter"]
    print(f"similar(k: 10): {len(base)} requests per filter, interleaved")
    print(f"  {'':34} {'p50 ms':>8} {'p95 ms':>8}  vs none")
    for name, samples in results.items():
        print(row(name, samples, None if name == "no filter" else base))


if __name__ == "__main__":
    main()
