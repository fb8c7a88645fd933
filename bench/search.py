"""Benchmark searchBooks, first time and cached, and what filters cost.

Run it against a running server (``lookalike serve``):

    .venv/bin/python -m bench.search [--url http://127.0.0.1:8000] [--rounds 40]

1. searchBooks with a text never seen (embedded by the model) against the same text again
   (its vector from the Redis cache): p50/p95 and the ratio. Target: cached <= 0.2x first.
2. Book similar(k: 10) without a filter, with a broad filter (genres: fantasy) and with a
   selective one (a genre of ~10 books, in a year range): p50/p95 and ratios to no filter.
"""

from __future__ import annotations

import argparse
import time
import uuid
from typing import Any

import httpx
import numpy as np

SEARCH = "query($text: String!) { searchBooks(text: $text, k: 10) { distance book { title } } }"
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


def timed(client: httpx.Client, url: str, query: str, **variables: Any) -> float:
    started = time.perf_counter()
    body = client.post(url, json={"query": query, "variables": variables}).json()
    elapsed = (time.perf_counter() - started) * 1000
    assert "errors" not in body, body
    return elapsed


def row(name: str, samples: list[float], base: list[float] | None = None) -> str:
    ratio = f"{pct(samples, 50) / pct(base, 50):6.2f}x" if base else ""
    return f"  {name:34} {pct(samples, 50):8.2f} {pct(samples, 95):8.2f} {ratio}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()
    url = args.url.rstrip("/") + "/graphql"

    with httpx.Client(timeout=120) as client:
        timed(client, url, SEARCH, text="load the model " + uuid.uuid4().hex)
        first, cached = [], []
        for n in range(args.rounds):
            # a fresh text each round: never in the cache, whatever ran before
            text = f"{TOPICS[n % len(TOPICS)]} ({uuid.uuid4().hex[:8]})"
            first.append(timed(client, url, SEARCH, text=text))
            cached.append(timed(client, url, SEARCH, text=text))
        print(f"searchBooks(k: 10): {args.rounds} new texts, each asked twice")
        print(f"  {'':34} {'p50 ms':>8} {'p95 ms':>8}  ratio")
        print(row("first time (model)", first))
        print(row("same text again (cache)", cached, first) + " (target <= 0.2x)")

        genres = client.post(url, json={"query": "{ genres { name count } }"}).json()
        rare = next(g["name"] for g in reversed(genres["data"]["genres"]) if g["count"] >= 10)
        ids = client.post(url, json={"query": "{ books(first: 100) { edges { node { id } } } }"})
        book_ids = [e["node"]["id"] for e in ids.json()["data"]["books"]["edges"]]
        filters: dict[str, dict[str, Any] | None] = {
            "no filter": None,
            "genres: [fantasy]": {"genres": ["fantasy"]},
            f"genres: [{rare}], 1990-2020": {"genres": [rare], "yearFrom": 1990, "yearTo": 2020},
        }
        results: dict[str, list[float]] = {name: [] for name in filters}
        for _ in range(max(1, args.rounds // 20)):
            for book_id in book_ids:
                for name, given in filters.items():  # interleaved: same machine state for all
                    results[name].append(timed(client, url, SIMILAR, id=book_id, filter=given))
        base = results["no filter"]
        print(f"similar(k: 10): {len(base)} requests per filter, interleaved")
        print(f"  {'':34} {'p50 ms':>8} {'p95 ms':>8}  vs none")
        for name, samples in results.items():
            print(row(name, samples, None if name == "no filter" else base))


if __name__ == "__main__":
    main()
