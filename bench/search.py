"""Benchmark searchBooks, first time and cached, and what filters cost.

Run it against a running server (``lookalike serve``):

    .venv/bin/python -m bench.search [--url http://127.0.0.1:8000] [--rounds 40]

1. searchBooks with a text never seen (embedded by the model) against the same text again
   (its vector cached): p50/p95 and the ratio. Target: cached <= 0.2x first.
2. Book similar(k: 10) without a filter, with a broad filter (genres: fantasy) and with a
   selective one (a genre of ~10 books, in a year range): p50/p95 and ratios to no filter.

Requests go through the standard library's http.client on one keep-alive connection: httpx
adds about 0.6 ms a request on this machine, a fixed cost on both sides of the ratio that says
nothing about the server.
"""

from __future__ import annotations

import argparse
import http.client
import json
import time
import uuid
from typing import Any
from urllib.parse import urlsplit

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


class Client:
    """A keep-alive HTTP/1.1 connection posting GraphQL, as lean as the stdlib allows."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.path = (parts.path.rstrip("/") or "") + "/graphql"
        self.connection = http.client.HTTPConnection(
            parts.hostname or "127.0.0.1", parts.port, timeout=120
        )

    def post(self, query: str, **variables: Any) -> dict[str, Any]:
        payload = json.dumps({"query": query, "variables": variables})
        self.connection.request("POST", self.path, payload, {"content-type": "application/json"})
        body: dict[str, Any] = json.loads(self.connection.getresponse().read())
        assert "errors" not in body, body
        return body


def timed(client: Client, query: str, **variables: Any) -> float:
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
    args = parser.parse_args()
    client = Client(args.url)
    timed(client, SEARCH, text="load the model " + uuid.uuid4().hex)
    print(f"searchBooks(k: 10): {args.rounds} new texts of each length, each asked twice")
    print(f"  {'':34} {'p50 ms':>8} {'p95 ms':>8}  ratio")
    for label, sentences in (("a search-box query (~10 words)", 1), ("a paragraph (~40 words)", 4)):
        first, cached = [], []
        for n in range(args.rounds):
            # a fresh text each round: never in the cache, whatever ran before
            parts = [TOPICS[(n + i) % len(TOPICS)] for i in range(sentences)]
            text = f"{'. '.join(parts)} ({uuid.uuid4().hex[:8]})"
            first.append(timed(client, SEARCH, text=text))
            cached.append(timed(client, SEARCH, text=text))
        print(f"  {label}")
        print(row("  first time (model)", first))
        print(row("  same text again (cache)", cached, first) + " (target <= 0.2x)")

    genres = client.post("{ genres { name count } }")
    rare = next(g["name"] for g in reversed(genres["data"]["genres"]) if g["count"] >= 10)
    ids = client.post("{ books(first: 100) { edges { node { id } } } }")
    book_ids = [e["node"]["id"] for e in ids["data"]["books"]["edges"]]
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
