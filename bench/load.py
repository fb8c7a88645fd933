"""Load test: a fixed request rate for a fixed time against a local server, mixed traffic.

    .venv/bin/python -m bench.load [--url http://127.0.0.1:8000] [--rate 30] [--seconds 120]
                                   [--dataset tests/data/orl] [--key KEY]

Requests start on a fixed schedule (open loop: a slow answer does not delay the next
request, and latency is counted from when the request was due, so queueing shows), mixing
book pages, book details with similar books, nested recommendations, searches (a pool of
texts: the first use of each runs the model, later ones hit the cache) and, when people are
enrolled, face identifications. Before the load, each kind is timed alone (sequentially) in
the same run: the ratio column is p50 under load against that idle p50.

Only loopback URLs are accepted: this is for your own server, not someone else's.
Identifications are mutations: on a server with LOOKALIKE_API_KEYS, pass --key.
Target: zero errors and zero 5xx at the default rate.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import random
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import numpy as np

from bench.phone_photos import ORL

BOOK = """query Book($id: ID!) { book(id: $id) { title author rating
  similar(k: 5) { distance book { title } } } }"""
NESTED = """query Nested($id: ID!) { book(id: $id) { title
  similar(k: 5) { book { title similar(k: 5) { distance book { title } } } } } }"""
PAGE = """query Page($after: String) { books(first: 20, after: $after) {
  edges { node { id title } } pageInfo { endCursor } } }"""
SEARCH = """query Search($text: String!) { searchBooks(text: $text, k: 10,
  filter: {minRating: 3.5}) { distance book { title } } }"""
IDENTIFY = """mutation Identify($image: Upload!) { identifyFace(image: $image, k: 3) {
  person { id } distance } }"""
SUBJECTS = [
    "a detective",
    "two sisters",
    "a starship crew",
    "a young witch",
    "soldiers",
    "a chef",
    "an old sailor",
    "twin princes",
    "a lost dog",
    "a chess prodigy",
]
PLOTS = ["hunts a killer in a port city", "inherit a haunted farm", "wake to an empty ship",
         "run a delivery service", "are trapped behind enemy lines", "opens a restaurant",
         "crosses the ocean alone", "fight for one throne", "finds the way home",
         "plays the world champion"]  # fmt: skip
MIX = {"book": 35, "nested": 15, "page": 10, "search": 30, "identify": 10}


@dataclass
class Results:
    latency: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    late_starts: int = 0


class Traffic:
    def __init__(self, client: httpx.AsyncClient, url: str, key: str | None, faces: list[bytes]):
        self.client = client
        self.url = url
        self.headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.faces = faces
        self.book_ids: list[str] = []
        self.cursors: list[str | None] = [None]
        texts = [f"{s} {p}" for s in SUBJECTS for p in PLOTS]
        random.Random(7).shuffle(texts)
        self.texts = texts

    async def prepare(self) -> None:
        after: str | None = None
        for _ in range(5):
            body = await self.graphql(PAGE, {"after": after})
            page = body["data"]["books"]
            self.book_ids += [edge["node"]["id"] for edge in page["edges"]]
            after = page["pageInfo"]["endCursor"]
            self.cursors.append(after)

    async def graphql(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        response = await self.client.post(
            self.url, json={"query": query, "variables": variables}, headers=self.headers
        )
        return self.checked(response)

    @staticmethod
    def checked(response: httpx.Response) -> dict[str, Any]:
        body: dict[str, Any] = response.json() if response.content else {}
        body["_status"] = response.status_code
        return body

    async def send(self, kind: str, rng: random.Random) -> dict[str, Any]:
        if kind == "identify":
            operations = json.dumps({"query": IDENTIFY, "variables": {"image": None}})
            response = await self.client.post(
                self.url,
                data={"operations": operations, "map": json.dumps({"0": ["variables.image"]})},
                files={"0": ("face", rng.choice(self.faces), "application/octet-stream")},
                headers={**self.headers, "Apollo-Require-Preflight": "true"},
            )
            return self.checked(response)
        if kind == "search":
            return await self.graphql(SEARCH, {"text": rng.choice(self.texts)})
        if kind == "page":
            return await self.graphql(PAGE, {"after": rng.choice(self.cursors)})
        query = BOOK if kind == "book" else NESTED
        return await self.graphql(query, {"id": rng.choice(self.book_ids)})


async def timed(traffic: Traffic, kind: str, rng: random.Random, due: float, out: Results) -> None:
    try:
        body = await traffic.send(kind, rng)
    except httpx.HTTPError as exc:
        out.errors[f"{kind}: {type(exc).__name__}"] += 1
        return
    out.latency[kind].append((time.perf_counter() - due) * 1000)
    out.statuses[body["_status"]] += 1
    for error in body.get("errors", []):
        out.errors[f"{kind}: {error.get('extensions', {}).get('code')}"] += 1


async def idle_baseline(traffic: Traffic, kinds: list[str], rounds: int) -> dict[str, float]:
    """Each kind alone, one request at a time: what the server does without competition."""
    rng = random.Random(1)
    samples: dict[str, list[float]] = defaultdict(list)
    for _ in range(rounds):
        for kind in kinds:
            started = time.perf_counter()
            await traffic.send(kind, rng)
            samples[kind].append((time.perf_counter() - started) * 1000)
    return {kind: float(np.percentile(values, 50)) for kind, values in samples.items()}


ROW = "  {:10} {:>6} {:>8} {:>8} {:>8} {:>9} {:>9}"


def row(kind: str, values: list[float], idle: float | None) -> str:
    p50, p95, p99 = (float(np.percentile(values, q)) for q in (50, 95, 99))
    ratios = (f"{idle:.1f}", f"{p50 / idle:.2f}x") if idle else ("", "")
    return ROW.format(kind, len(values), f"{p50:.1f}", f"{p95:.1f}", f"{p99:.1f}", *ratios)


async def run(args: argparse.Namespace, faces: list[bytes]) -> None:
    limits = httpx.Limits(
        max_connections=args.connections, max_keepalive_connections=args.connections
    )
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        traffic = Traffic(client, args.url.rstrip("/") + "/graphql", args.key, faces)
        await traffic.prepare()
        people = await traffic.graphql("{ people(first: 1) { totalCount } }", {})
        kinds = [
            k for k in MIX if k != "identify" or (faces and people["data"]["people"]["totalCount"])
        ]
        weights = [MIX[k] for k in kinds]
        print(f"mix: {', '.join(f'{k} {MIX[k]}' for k in kinds)} (weights)")
        idle = await idle_baseline(traffic, kinds, rounds=10)
        # The idle rounds searched some texts: load starts with part of the pool cached.

        out = Results()
        rng = random.Random(args.seed)
        tasks: set[asyncio.Task[None]] = set()
        total = int(args.rate * args.seconds)
        started = time.perf_counter()
        for n in range(total):
            due = started + n / args.rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -0.05:
                out.late_starts += 1  # this client could not keep the schedule
            kind = rng.choices(kinds, weights)[0]
            task = asyncio.create_task(timed(traffic, kind, random.Random(rng.random()), due, out))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - started

    done = sum(len(v) for v in out.latency.values())
    every = [x for v in out.latency.values() for x in v]
    server_errors = sum(c for s, c in out.statuses.items() if s >= 500)
    print(
        f"{args.rate:g} req/s offered for {args.seconds:g} s: {done} answered in {elapsed:.1f} s "
        f"= {done / elapsed:.1f} req/s; errors {sum(out.errors.values())}, 5xx {server_errors}, "
        f"late starts {out.late_starts}"
    )
    print(ROW.format("", "count", "p50 ms", "p95 ms", "p99 ms", "idle p50", "p50/idle"))
    for kind in kinds:
        if out.latency[kind]:
            print(row(kind, out.latency[kind], idle[kind]))
    print(row("all", every, None))
    print(f"  statuses: {dict(sorted(out.statuses.items()))}")
    for error, count in out.errors.most_common():
        print(f"  error {error}: {count}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--rate", type=float, default=30, help="requests started per second")
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--dataset", default=str(ORL), help="ORL folder, '' for none")
    parser.add_argument("--key", default=None, help="API key, for servers with LOOKALIKE_API_KEYS")
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    host = urlsplit(args.url).hostname or ""
    if host != "localhost" and not ipaddress.ip_address(host).is_loopback:
        raise SystemExit(f"refusing {args.url}: the load test only runs against loopback")
    photos = sorted(Path(args.dataset).glob("s*/[6-9].*"))[:80] if args.dataset else []
    asyncio.run(run(args, [photo.read_bytes() for photo in photos]))


if __name__ == "__main__":
    main()
