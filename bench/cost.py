"""Server time per unit of query cost, for every kind of costed field, on the shipped
catalogue and on 20,000 books: whether the cost limit prices the work a query makes.

    .venv/bin/python -m bench.cost [--runs 3] [--rounds 3] [--size 20000] [--data-dir DIR]

It starts its own servers: a ``lookalike serve`` on a fresh data directory (its embedded
Redis, the shipped catalogue loaded), then the generated catalogue of ``--size`` books
(bench/scale.py's: real books plus noisy variants of them) loaded into the same Redis under
its own index, with a second server on it. Each kind of field is asked in a query as large as
the default limits allow (the cost at most the default limit, at most 20 aliases, pages of at
most 100), its cost worked out by the server's own cost model for that catalogue's size. The
baseline is bench/books.py's nested query (20 books x similar(5) x similar(5)) on the same
server. Per run, every query is sent ``--rounds`` times, one request at a time, kinds and
catalogues interleaved (in turn forwards and backwards); the median time over the cost is the
kind's time per unit, and its ratio to the nested query's in the same run is what counts. The
summary gives each ratio's minimum, median and maximum over the runs. ``--data-dir`` keeps
the Redis and the generated catalogue for the next run (no second load). Not measured: the
face fields (a photo is priced as a model run) and introspection (a fixed price).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis
from graphql import GraphQLObjectType, OperationDefinitionNode, VariableValues, parse

from bench import http_client
from bench.books import NESTED
from bench.scale import Measured, free_port, generate, load_into_redis
from lookalike.schema.execution.schema import build_schema
from lookalike.schema.execution.strawberry_compat import graphql_schema
from lookalike.schema.limits.cost import operation_cost
from lookalike.services.core.settings import Settings, get_settings
from lookalike.services.redis.embedded import running_url

LIMIT = Settings.model_fields["max_query_cost"].default
MAX_ALIASES = 20
PAGE = 100


# Each kind is a template: PAGE_SIZE, where present, is the size of a page of books the field
# is asked on (each of them); ALIAS is the alias's number (two digits), so that no two aliases
# ask the same search (the server runs a search asked twice once); LIKED is 50 of the
# catalogue's books, a window that moves with the alias.
PAGE_SIZE, ALIAS, LIKED, RUN = "@PAGE", "@AL", "@LIKED", "@RUN"


def on_books(inner: str) -> str:
    return f"books(first: {PAGE_SIZE}) {{ edges {{ node {{ {inner} }} }} }}"


UNSEEN = f'exclude: ["99999{ALIAS}"]'  # no such book: the same search, another key
KINDS: dict[str, str] = {
    "books page": on_books("title"),
    "books page, description": on_books("title description"),
    "similar(k: 5)": on_books(f"similar(k: 5, {UNSEEN}) {{ distance book {{ title }} }}"),
    "similar(k: 50)": on_books(f"similar(k: 50, {UNSEEN}) {{ distance book {{ title }} }}"),
    "similar(k: 1, diversity: 0.5)": on_books(
        f"similar(k: 1, diversity: 0.5, {UNSEEN}) {{ book {{ title }} }}"
    ),
    "similar(k: 5, maxPerAuthor: 1)": on_books(
        f"similar(k: 5, maxPerAuthor: 1, {UNSEEN}) {{ book {{ title }} }}"
    ),
    "withinRadius(r: 0.3)": on_books(
        f"withinRadius(r: 0.30{ALIAS}) {{ totalCount matches {{ book {{ title }} }} }}"
    ),
    "withinRadius(r: 0.6)": on_books(
        f"withinRadius(r: 0.60{ALIAS}) {{ totalCount matches {{ book {{ title }} }} }}"
    ),
    "withinRadius(r: 0.8, first: 0)": on_books(
        f"withinRadius(r: 0.80{ALIAS}, first: 0) {{ totalCount }}"
    ),
    "withinRadius(r: 2, first: 0)": on_books(
        f"withinRadius(r: 1.99{ALIAS}, first: 0) {{ totalCount }}"
    ),
    "withinRadius(r: 2, first: 100)": on_books(
        f"withinRadius(r: 1.99{ALIAS}, first: 100) {{ matches {{ book {{ title }} }} }}"
    ),
    "recommend AVERAGE_VECTOR": f"recommend(liked: [{LIKED}], k: 20) {{ book {{ title }} }}",
    "recommend BEST_SCORE": (
        f"recommend(liked: [{LIKED}], strategy: BEST_SCORE, k: 20) {{ book {{ title }} }}"
    ),
    "recommend BEST_SCORE, diversity": (
        f"recommend(liked: [{LIKED}], strategy: BEST_SCORE, k: 20, diversity: 0.5) "
        "{ book { title } }"
    ),
    "genres": "genres { name count }",
    # a new text each time (RUN: the request's number): the model embeds every one
    "searchBooks SEMANTIC, new texts": (
        f'searchBooks(text: "stories of the sea {RUN} {ALIAS}", mode: SEMANTIC, k: 20) '
        "{ book { title } }"
    ),
    "searchBooks HYBRID": (
        f'searchBooks(text: "a detective in london {ALIAS}", k: 20) {{ book {{ title }} }}'
    ),
}


@dataclass
class Target:
    """One catalogue: its server, and per kind the query sent, its cost and its timings."""

    name: str
    url: str
    books: int
    queries: dict[str, str] = field(default_factory=dict)
    costs: dict[str, int] = field(default_factory=dict)
    times: dict[str, list[float]] = field(default_factory=dict)


class Costs:
    """The server's own cost model, for a catalogue of a given size."""

    def __init__(self) -> None:
        schema = graphql_schema(build_schema(get_settings()))
        root = schema.query_type
        assert isinstance(root, GraphQLObjectType)
        self.root = root

    def of(self, query: str, books: int) -> int:
        operation = parse(query).definitions[0]
        assert isinstance(operation, OperationDefinitionNode)
        return operation_cost(operation, self.root, {}, VariableValues({}, {}), books)


def largest(template: str, ids: list[str], costs: Costs, books: int) -> tuple[str, int]:
    """The largest query of this kind within the limit: aliased copies of the field, on
    pages as large as fit."""

    def field_text(alias: int, size: int) -> str:
        liked = ", ".join(f'"{i}"' for i in ids[alias : alias + 50])
        filled = template.replace(PAGE_SIZE, str(size)).replace(ALIAS, f"{alias:02d}")
        return filled.replace(LIKED, liked)

    sizes = range(1, PAGE + 1) if PAGE_SIZE in template else range(1, 2)
    one = {size: costs.of(f"{{ a0: {field_text(0, size)} }}", books) for size in sizes}
    # the aliases' costs add up (root fields): the most of them, on the largest pages, that fit
    fits = [(aliases * one[size], aliases, size) for aliases in range(1, MAX_ALIASES + 1)
            for size in sizes if aliases * one[size] <= LIMIT]  # fmt: skip
    if not fits:
        raise SystemExit(f"even the smallest query is over the limit: {field_text(0, 1)}")
    for _, aliases, size in sorted(fits, reverse=True):  # the aliases' arguments differ a little
        query = "{ " + " ".join(f"a{n}: {field_text(n, size)}" for n in range(aliases)) + " }"
        cost = costs.of(query, books)
        if cost <= LIMIT:
            return query, cost
    raise SystemExit(f"no query of this kind is within the limit: {field_text(0, 1)}")


def start(data_dir: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    """A ``lookalike serve`` on a free port, once it is ready."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "lookalike.schema.cli", "serve", "--port", str(port)],
        # a loaded machine's Redis may answer a pipeline of a thousand searches in over the 2 s
        # default: this bench measures time, not timeouts
        env={**os.environ, "LOOKALIKE_DATA_DIR": str(data_dir), "LOOKALIKE_LOG_LEVEL": "WARNING",
             "LOOKALIKE_REDIS_TIMEOUT": "30",
             # ready once the text model has loaded: not loading it while timed (bench.scale)
             "LOOKALIKE_READY_WAITS_FOR_MODELS": "true", **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    for _ in range(3000):
        try:
            if httpx.get(url + "/readyz").status_code == 200:
                return process, url + "/graphql"
        except httpx.HTTPError:
            pass
        if process.poll() is not None:
            raise SystemExit("lookalike serve stopped before it was ready")
        time.sleep(0.1)
    process.terminate()
    raise SystemExit("lookalike serve was not ready in 5 minutes")


def prepare(target: Target, costs: Costs) -> None:
    page = httpx.post(target.url, json={"query": "{ books(first: 70) { edges { node { id } } } }"})
    ids = [edge["node"]["id"] for edge in page.json()["data"]["books"]["edges"]]
    model = '{ searchBooks(text: "warm", k: 1) { distance } }'  # loads the model, untimed
    httpx.post(target.url, json={"query": model}, timeout=600).raise_for_status()
    nested = "{ " + NESTED.split("{", 1)[1].replace("$first", "20")
    target.queries["nested"] = nested
    target.costs["nested"] = costs.of(nested, target.books)
    for name, template in KINDS.items():
        query, cost = largest(template, ids, costs, target.books)
        target.queries[name] = query
        target.costs[name] = cost
    for name in target.queries:
        target.times[name] = []


async def timed_runs(targets: list[Target], rounds: int, warm: bool) -> None:
    """Every query of every catalogue ``rounds`` times, interleaved, one at a time (each on a
    connection opened for it, untimed: a server closes a connection idle for 5 s)."""
    order = [(t, name) for t in targets for name in t.queries]
    sent = 0

    async def send(t: Target, name: str) -> tuple[float, int, bytes]:
        nonlocal sent
        sent += 1
        query = t.queries[name].replace(RUN, str(sent))
        request = http_client.post(t.url, {"query": query})
        connection = await http_client.Connection.open(t.url)
        started = time.perf_counter()
        status, body = await connection.send(request)
        elapsed = time.perf_counter() - started
        await connection.close()
        return elapsed, status, body

    if warm:  # every path once (and check it answers)
        for t, name in order:
            elapsed, status, body = await send(t, name)
            print(f"  {t.name} {name}: cost {t.costs[name]:,}, {elapsed * 1000:.0f} ms",
                  file=sys.stderr, flush=True)  # fmt: skip
            assert status == 200, (t.name, name, status)
            assert b'"errors"' not in body, (t.name, name, body[:500])
    for n in range(rounds):
        for t, name in order if n % 2 == 0 else reversed(order):
            elapsed, status, _ = await send(t, name)
            assert status == 200
            t.times[name].append(elapsed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size", type=int, default=20_000)
    parser.add_argument(
        "--data-dir", type=Path, help="keep the Redis here, and its catalogues for the next run"
    )
    args = parser.parse_args()
    costs = Costs()
    servers: list[subprocess.Popen[bytes]] = []
    with contextlib.ExitStack() as stack:
        data_dir = args.data_dir or Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-cost-"))
        )
        try:
            process, url = start(data_dir, {"LOOKALIKE_CATALOGUE_AUTOLOAD": "true"})
            servers.append(process)
            redis_url = running_url(data_dir)
            assert redis_url is not None
            name = f"cost{args.size}"
            big = generate(args.size)
            if not redis.Redis.from_url(redis_url).exists(f"index-definition:{name}"):
                print(f"  loading {args.size:,} books", file=sys.stderr, flush=True)
                settings = get_settings().model_copy(
                    update={"redis_url": redis_url, "index_name": name, "key_prefix": name,
                            "data_dir": data_dir}
                )  # fmt: skip
                load_into_redis(Measured(settings, big))
            process, big_url = start(
                data_dir,
                {"REDIS_URL": redis_url, "LOOKALIKE_INDEX_NAME": name,
                 "LOOKALIKE_KEY_PREFIX": name, "LOOKALIKE_CATALOGUE_AUTOLOAD": "false"},
            )  # fmt: skip
            servers.append(process)
            targets = [
                Target("shipped", url, _books(url)),
                Target(f"{args.size:,}", big_url, _books(big_url)),
            ]
            for target in targets:
                prepare(target, costs)
            report(targets, args)
        finally:
            for process in servers:
                process.terminate()
                process.wait()


def _books(url: str) -> int:
    """The catalogue's size as the server knows it (what it prices radius searches by)."""
    found: int = httpx.get(url.replace("/graphql", "/readyz")).json()["books"]
    return found


def report(targets: list[Target], args: argparse.Namespace) -> None:
    ratios: dict[tuple[str, str], list[float]] = {}
    per_unit: dict[tuple[str, str], list[float]] = {}
    for run in range(1, args.runs + 1):
        for t in targets:
            for name in t.times:
                t.times[name] = []
        asyncio.run(timed_runs(targets, args.rounds, warm=run == 1))
        for t in targets:
            base = statistics.median(t.times["nested"]) / t.costs["nested"]
            for name, times in t.times.items():
                unit = statistics.median(times) / t.costs[name]
                per_unit.setdefault((t.name, name), []).append(unit * 1e6)
                ratios.setdefault((t.name, name), []).append(unit / base)
        print(f"  run {run} done", file=sys.stderr, flush=True)
    print(
        f"server time per unit of cost (default limit {LIMIT:,}); median over {args.rounds} "
        f"requests a run, {args.runs} runs; ratio to the nested query's: min / median / max"
    )
    print(f"{'kind':<34} {'books':>7} {'cost':>7} {'us/unit':>8} {'ratio':>22}")
    for t in targets:
        for name in t.times:
            units = per_unit[(t.name, name)]
            found = ratios[(t.name, name)]
            print(
                f"{name:<34} {t.name:>7} {t.costs[name]:>7,} {statistics.median(units):8.1f} "
                f"{min(found):6.2f}x {statistics.median(found):6.2f}x {max(found):6.2f}x"
            )
    worst = max(statistics.median(r) for r in ratios.values())
    print(f"worst kind: {worst:.2f}x the nested query's time per unit (target <= 3x)")


if __name__ == "__main__":
    main()
