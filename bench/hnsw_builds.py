"""Which HNSW build finds a dense catalogue's neighbours for the least work: recall@10 and time
per KNN of several builds (vector type, M, EF_CONSTRUCTION) at several EF_RUNTIME values.

    .venv/bin/python -m bench.hnsw_builds [--books 100000] [--relatives 670]
        [--builds float16:16:200 float16:32:200] [--ef-runtimes 100 200 400 650]

A million books take half an hour to load into one Redis here, too long to try builds on.
What makes the million hard is its density, not its size: bench/scale.py's generated books are
relatives of real ones, about 670 to a real book at a million. So this bench generates
``--books`` books (bench/scale.py's generator) around only as many real books as give each
``--relatives`` of them, a catalogue as dense as the million in a tenth of its size, and loads
it once per build through the product's loader into a Redis of its own (the embedded server,
on a free port; REDIS_URL is not used). Recall is bench/scale.py's: exact neighbours from
numpy, judged by exact distance, on the same random books for every build. Time per KNN is a
pipeline of those books' queries, ``--rounds`` times, the builds taking turns each round
(this machine drifts within minutes): the median of the rounds, and their spread.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass

import redis

from bench.scale import Measured, ScaleCatalogue, free_port, generate, load_into_redis, recall
from lookalike.services.core.settings import Settings
from lookalike.services.redis.embedded import server_command


@dataclass(frozen=True)
class Build:
    vector_type: str
    m: int
    ef_construction: int

    @classmethod
    def parse(cls, text: str) -> Build:
        kind, m, efc = text.split(":")
        return cls(kind.lower(), int(m), int(efc))

    @property
    def name(self) -> str:
        return f"builds{self.vector_type}m{self.m}efc{self.ef_construction}"

    def settings(self, url: str, ef_runtime: int | None = None) -> Settings:
        return Settings(
            redis_url=url,
            index_name=self.name,
            key_prefix=self.name,
            vector_type=self.vector_type,  # type: ignore[arg-type]
            hnsw_m=self.m,
            hnsw_ef_construction=self.ef_construction,
            hnsw_ef_runtime=ef_runtime,
            catalogue_autoload=False,
            redis_timeout=600,
        )

    def __str__(self) -> str:
        return f"{self.vector_type.upper()} M {self.m} EF_CONSTRUCTION {self.ef_construction}"


def measure(
    builds: list[Build], data: ScaleCatalogue, efs: list[int], books: int, rounds: int
) -> None:
    with tempfile.TemporaryDirectory() as data_dir:
        port = free_port()
        command = server_command("--port", str(port), "--save", "", "--appendonly", "no")
        server = subprocess.Popen([*command, "--dir", data_dir], stdout=subprocess.DEVNULL)
        url = f"redis://127.0.0.1:{port}"
        client = redis.Redis(port=port)
        try:
            for _ in range(100):
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    time.sleep(0.1)
            loaded: dict[Build, float] = {}
            for build in builds:  # bench.scale's load: until every book is indexed
                target = Measured(build.settings(url), data)
                load_into_redis(target)
                loaded[build] = target.indexed_seconds or 0.0
                print(f"  {build}: loaded in {loaded[build]:.0f} s", flush=True)
            found: dict[tuple[Build, int], float] = {}
            times: dict[tuple[Build, int], list[float]] = {}
            for _ in range(rounds):
                for ef in efs:
                    for build in builds:
                        near, _, seconds, _ = asyncio.run(
                            recall(build.settings(url, ef), data, books, 2)
                        )
                        found[build, ef] = near
                        times.setdefault((build, ef), []).append(seconds * 1000 / books)
            print(
                f"{len(data.records):,} books, {books} KNN queries (k 10) a pipeline, "
                f"{rounds} rounds, builds interleaved"
            )
            print(
                f"{'build':>36} {'load s':>7} {'EF_RUNTIME':>10} {'recall@10':>9} "
                f"{'ms a KNN':>8} {'spread':>11}"
            )
            for build in builds:
                for ef in efs:
                    ms = times[build, ef]
                    print(
                        f"{build!s:>36} {loaded[build]:7.0f} {ef:10} {found[build, ef]:9.3f} "
                        f"{statistics.median(ms):8.2f} {min(ms):5.2f}-{max(ms):<5.2f}"
                    )
        finally:
            server.terminate()
            server.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--books", type=int, default=100_000)
    parser.add_argument("--relatives", type=int, default=670)
    parser.add_argument(
        "--builds",
        nargs="+",
        type=Build.parse,
        default=[Build("float16", 16, 200), Build("float16", 32, 200)],
        help="TYPE:M:EF_CONSTRUCTION each",
    )
    parser.add_argument("--ef-runtimes", type=int, nargs="+", default=[100, 200, 400, 650])
    parser.add_argument("--recall-books", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    data = generate(args.books, relatives=args.relatives)
    measure(args.builds, data, args.ef_runtimes, args.recall_books, args.rounds)


if __name__ == "__main__":
    main()
