"""The course's face protocol, run on the project's own code and a throwaway namespace.

Closed set: enrol some images of every person, identify the others by their nearest face.
Open set: enrol a quarter fewer people, then query both the enrolled people's other images
(they should be accepted as the right person) and every image of the people left out (they
should be refused): the rates at the configured threshold, and the threshold that separates
the two groups best. Each image is embedded once, whatever the two sets reuse.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import re
import statistics
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from lookalike.services.core.errors import BadUserInput, LookalikeError
from lookalike.services.faces.model import MODEL_LABEL
from lookalike.services.faces.store import Layout, face_store
from lookalike.services.faces.workers import FaceWorkers
from lookalike.services.redis.connection import Redis

IMAGE_SUFFIXES = {".bmp", ".png", ".jpg", ".jpeg", ".webp", ".heic", ".heif", ".avif", ".mpo"}


def parse_numbers(spec: str) -> list[int]:
    """``1-5`` or ``1,3,6-10``: image numbers (file stems) as the CLI takes them."""
    numbers: list[int] = []
    for part in spec.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not match:
            raise BadUserInput(f"{spec!r} is not a list of image numbers such as 1-5 or 1,3,6-10")
        low, high = int(match[1]), int(match[2] or match[1])
        numbers += range(low, high + 1)
    return sorted(set(numbers))


def people_in(dataset: Path) -> dict[str, dict[int, Path]]:
    """One folder per person (the folder name is the id), images named by number."""
    if not dataset.is_dir():
        raise BadUserInput(f"{dataset} is not a folder of person folders")
    people: dict[str, dict[int, Path]] = {}
    for folder in sorted(dataset.iterdir(), key=_natural):
        if folder.is_dir():
            images = {
                int(p.stem): p
                for p in folder.iterdir()
                if p.suffix.lower() in IMAGE_SUFFIXES and p.stem.isdigit()
            }
            if images:
                people[folder.name] = images
    if not people:
        raise BadUserInput(f"{dataset} holds no person folders with numbered images")
    return people


def _natural(path: Path) -> list[object]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


@dataclass
class OpenSet:
    enrolled_people: int
    stranger_people: int
    known: list[tuple[bool, float]]  # (nearest is the right person, distance)
    strangers: list[float]

    def at(self, threshold: float) -> tuple[int, int]:
        right = sum(1 for ok, d in self.known if ok and d < threshold)
        false = sum(1 for d in self.strangers if d < threshold)
        return right, false

    def error_rates(self, threshold: float) -> tuple[float, float]:
        """(false accept, false reject) at a threshold, as fractions: strangers taken for
        someone enrolled, and enrolled people's photos not taken for themselves."""
        right, false = self.at(threshold)
        return false / max(len(self.strangers), 1), 1 - right / max(len(self.known), 1)

    def spread(self, group: Literal["known", "strangers"]) -> str:
        """Where a group's nearest distances lie: the right person's upper end, the
        strangers' lower end (the two ends a threshold sits between)."""
        if group == "known":
            d = [d for ok, d in self.known if ok] or [0.0]
            return f"{statistics.median(d):.3f}/{_quantile(d, 0.95):.3f}/{max(d):.3f}"
        s = self.strangers or [0.0]
        return f"{min(s):.3f}/{_quantile(s, 0.05):.3f}/{statistics.median(s):.3f}"

    def best_threshold(self) -> float:
        """The threshold with the most right acceptances minus false ones (ties: lower)."""
        cuts = sorted({d for _, d in self.known} | set(self.strangers))
        candidates = [(a + b) / 2 for a, b in itertools.pairwise(cuts)] or cuts
        return max(candidates, key=lambda t: (self.at(t)[0] - self.at(t)[1], -t))


def _quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@dataclass
class EvalReport:
    layout: Layout
    model: str
    closed_correct: int
    closed_total: int
    open_set: OpenSet
    threshold: float
    seconds_per_image: list[float]
    failed: list[str]

    def lines(self) -> list[str]:
        pct = 100 * self.closed_correct / max(self.closed_total, 1)
        o = self.open_set
        right, false = o.at(self.threshold)
        best = o.best_threshold()
        best_right, best_false = o.at(best)
        known, strangers = len(o.known), len(o.strangers)
        ms = 1000 * statistics.median(self.seconds_per_image)
        return [
            f"closed set: {self.closed_correct}/{self.closed_total} correct ({pct:.1f}%)",
            f"open set: {o.enrolled_people} people enrolled, {o.stranger_people} strangers",
            f"  at threshold {self.threshold:.3f}: right person accepted {right}/{known} "
            f"({100 * right / max(known, 1):.1f}%), strangers accepted {false}/{strangers} "
            f"({100 * false / max(strangers, 1):.1f}%)",
            f"  best threshold {best:.3f}: right person accepted {best_right}/{known}, "
            f"strangers accepted {best_false}/{strangers}",
            f"  distances: right person median/p95/max {o.spread('known')}; "
            f"strangers min/p5/median {o.spread('strangers')}",
            f"time per image: {ms:.0f} ms median (decode, detection and embedding), "
            f"{len(self.seconds_per_image)} images; layout {self.layout}",
            *(f"no face found: {name}" for name in self.failed),
        ]


async def evaluate(
    client: Redis,
    embedder: FaceWorkers,
    dataset: Path,
    *,
    enroll: Sequence[int],
    query: Sequence[int],
    layout: Layout,
    threshold: float,
    progress: Callable[[int], None] | None = None,
) -> EvalReport:
    people = people_in(dataset)
    wanted = sorted({n for images in people.values() for n in images})
    vectors, seconds, failed = await _embed_all(embedder, people, wanted, progress)

    def images(person: str, numbers: Sequence[int]) -> list[bytes]:
        return [vectors[(person, n)] for n in numbers if (person, n) in vectors]

    everyone = list(people)
    closed_queries = [(p, v) for p in everyone for v in images(p, query)]
    closed = await _run(client, layout, {p: images(p, enroll) for p in everyone}, closed_queries)
    cut = max(1, len(everyone) * 3 // 4)
    enrolled, strangers = everyone[:cut], everyone[cut:]
    known_queries = [(p, v) for p in enrolled for v in images(p, query)]
    stranger_queries = [(p, v) for p in strangers for v in images(p, wanted)]
    opened = await _run(client, layout, {p: images(p, enroll) for p in enrolled},
                        known_queries + stranger_queries)  # fmt: skip
    known = [(found == p, d) for (p, _), (found, d) in zip(known_queries, opened, strict=False)]
    stranger_distances = [d for _, d in opened[len(known_queries) :]]
    return EvalReport(
        layout=layout,
        model=MODEL_LABEL,
        closed_correct=sum(
            1 for (p, _), (found, _) in zip(closed_queries, closed, strict=True) if found == p
        ),
        closed_total=len(closed_queries),
        open_set=OpenSet(len(enrolled), len(strangers), known, stranger_distances),
        threshold=threshold,
        seconds_per_image=seconds,
        failed=failed,
    )


async def _embed_all(
    embedder: FaceWorkers,
    people: dict[str, dict[int, Path]],
    numbers: Sequence[int],
    progress: Callable[[int], None] | None,
) -> tuple[dict[tuple[str, int], bytes], list[float], list[str]]:
    jobs = [
        (p, n, path) for p, images in people.items() for n, path in images.items() if n in numbers
    ]
    vectors: dict[tuple[str, int], bytes] = {}
    seconds: list[float] = []
    failed: list[str] = []

    async def one(person: str, number: int, path: Path) -> None:
        try:
            face = await embedder.embed(await asyncio.to_thread(path.read_bytes))
        except LookalikeError:
            failed.append(str(path))
        else:
            vectors[(person, number)] = face.vector
            seconds.append(face.seconds)
        if progress:
            progress(1)

    await asyncio.gather(*(one(*job) for job in jobs))
    return vectors, seconds, failed


async def _run(
    client: Redis,
    layout: Layout,
    enrolled: dict[str, list[bytes]],
    queries: Sequence[tuple[str, bytes]],
) -> list[tuple[str | None, float]]:
    """Enrol into a fresh namespace, answer every query by its nearest face, drop it all."""
    store = face_store(layout, client, namespace=f"eval-{uuid.uuid4().hex[:12]}:")
    await store.open()
    try:
        for person, vectors in enrolled.items():
            for vector in vectors:
                await store.enroll(person, None, hashlib.sha256(vector).hexdigest(), vector)
        answers: list[tuple[str | None, float]] = []
        for _, vector in queries:
            found = await store.nearest(vector, 1)
            answers.append((found[0].person_id, found[0].distance) if found else (None, 2.0))
        return answers
    finally:
        await store.drop()
