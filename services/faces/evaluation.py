"""The course's face protocol, run on the project's own code and a throwaway namespace.

Closed set: enrol some images of every person, identify the others by their nearest face.
Open set: enrol a quarter fewer people, then query both the enrolled people's other images
(they should be accepted as the right person) and every image of the people left out (they
should be refused): the rates at the configured threshold, and the threshold that separates
the two groups best. Each image is embedded once, whatever the two sets reuse.

Then probes against the open set's enrolment, one query photo a person: degraded copies
(``variants.DEGRADATIONS``: how often each earns its quality reason, and what refusing
unusable faces does to the right person and to strangers) and held-out variants
(``variants.HELD_OUT``: still named? strangers still out?). A face that is not usable is never
named.
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

import numpy as np
from PIL import Image

from lookalike.services.core.errors import BadUserInput, LookalikeError
from lookalike.services.faces.model import MODEL_LABEL, FaceModel, FacePick
from lookalike.services.faces.quality import FaceQuality
from lookalike.services.faces.store import Layout, face_store
from lookalike.services.faces.variants import DEGRADATIONS, HELD_OUT, encoded
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
    gated: tuple[int, int]  # the open set at the threshold, unusable faces refused
    unusable: list[tuple[str, FaceQuality]]  # query photos (open set) whose face is not usable
    probes: list[Probe]

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
            f"  unusable faces refused: right person accepted {self.gated[0]}/{known}, "
            f"strangers accepted {self.gated[1]}/{strangers}",
            *(
                f"  not usable: {name} ({', '.join(r.value for r in q.reasons)})"
                for name, q in self.unusable
            ),
            *(f"no face found: {name}" for name in self.failed),
            *self.probe_lines(),
        ]

    def probe_lines(self) -> list[str]:
        if not self.probes:
            return []
        t = self.threshold
        lines = [
            "quality: degraded copies of one query photo a person; named = the right person "
            "under the threshold, before -> after refusing unusable faces",
            f"  {'degradation':30} {'faces':>6} {'flagged':>8} {'reason':>12} "
            f"{'named':>12} {'strangers':>10}",
        ]
        for name, expected in [(d.name, d.expected) for d in DEGRADATIONS]:
            group = [p for p in self.probes if p.kind == name]
            found = [p for p in group if p.quality is not None]
            flagged = sum(1 for p in found if p.quality and not p.quality.usable)
            reason = expected.value if expected else "(none)"
            hits = sum(1 for p in found if p.quality and expected in p.quality.reasons)
            known = [p for p in found if p.enrolled]
            strangers = [p for p in found if not p.enrolled]
            lines.append(
                f"  {name:30} {len(found):>3}/{len(group):<3}"
                f" {flagged:>4}/{len(found):<3} {reason:>12} {hits:>3}"
                f" {sum(p.right(t) for p in known):>3}->{sum(p.named(t) for p in known):<3}"
                f"/{len(known):<3}"
                f" {sum(p.accepted(t, gate=False) for p in strangers):>3}->"
                f"{sum(p.accepted(t) for p in strangers)}/{len(strangers)}"
            )
        lines += [
            "robustness: held-out variants of one query photo a person, unusable faces refused",
            f"  {'variant':30} {'right top-1':>12} {'named':>8} {'strangers accepted':>19}",
        ]
        totals = [0, 0, 0, 0, 0]
        for name in HELD_OUT:
            group = [p for p in self.probes if p.kind == name]
            known = [p for p in group if p.enrolled]
            strangers = [p for p in group if not p.enrolled]
            row = [
                sum(p.found == p.person for p in known),
                sum(p.named(t) for p in known),
                len(known),
                sum(p.accepted(t) for p in strangers),
                len(strangers),
            ]
            totals = [a + b for a, b in zip(totals, row, strict=True)]
            lines.append(f"  {name:30} {row[0]:>8}/{row[2]:<3} {row[1]:>4}/{row[2]:<3} "
                         f"{row[3]:>15}/{row[4]}")  # fmt: skip
        lines.append(
            f"  {'all':30} {totals[0]:>8}/{totals[2]:<3} {totals[1]:>4}/{totals[2]:<3} "
            f"{totals[3]:>15}/{totals[4]}"
        )
        misses = [p for p in self.probes if p.kind in HELD_OUT and p.enrolled and not p.named(t)]
        lines += [f"  not named: {p.describe()}" for p in misses]
        return lines


@dataclass
class Probe:
    """One degraded or varied photo and the open set's answer to it."""

    kind: str
    person: str
    enrolled: bool  # the person is enrolled; else a stranger
    number: int
    found: str | None = None
    distance: float = 2.0
    quality: FaceQuality | None = None  # None: no face found

    def right(self, threshold: float) -> bool:
        return self.found == self.person and self.distance < threshold

    def named(self, threshold: float) -> bool:
        return self.right(threshold) and self.quality is not None and self.quality.usable

    def accepted(self, threshold: float, gate: bool = True) -> bool:
        usable = self.quality is not None and (self.quality.usable or not gate)
        return usable and self.distance < threshold

    def describe(self) -> str:
        reasons = ", ".join(r.value for r in self.quality.reasons) if self.quality else "no face"
        return (
            f"{self.kind}: {self.person}/{self.number} -> {self.found} at {self.distance:.4f}"
            f"{f' ({reasons})' if reasons else ''}"
        )


async def evaluate(
    client: Redis,
    embedder: FaceWorkers,
    dataset: Path,
    *,
    enroll: Sequence[int],
    query: Sequence[int],
    layout: Layout,
    threshold: float,
    probes: bool = True,
    progress: Callable[[int], None] | None = None,
) -> EvalReport:
    people = people_in(dataset)
    wanted = sorted({n for images in people.values() for n in images})
    vectors, qualities, seconds, failed = await _embed_all(embedder, people, wanted, progress)
    # the enrolment photos again, as enrollFace embeds them (ENROLMENT_VIEWS)
    gallery, _, _, _ = await _embed_all(embedder, people, enroll, progress, enrolling=True)

    def images(person: str, numbers: Sequence[int]) -> list[bytes]:
        return [vectors[(person, n)] for n in numbers if (person, n) in vectors]

    def enrolled_as(person: str) -> list[bytes]:
        return [gallery[(person, n)] for n in enroll if (person, n) in gallery]

    everyone = list(people)
    closed_queries = [(p, v) for p in everyone for v in images(p, query)]
    closed = await _run(client, layout, {p: enrolled_as(p) for p in everyone}, closed_queries)
    cut = max(1, len(everyone) * 3 // 4)
    enrolled, strangers = everyone[:cut], everyone[cut:]
    known_queries = [(p, v) for p in enrolled for v in images(p, query)]
    stranger_queries = [(p, v) for p in strangers for v in images(p, wanted)]
    probed = await _probe(embedder, people, query, set(enrolled), progress) if probes else []
    probe_queries = [(p.person, v) for p, v in probed]
    opened = await _run(client, layout, {p: enrolled_as(p) for p in enrolled},
                        known_queries + stranger_queries + probe_queries)  # fmt: skip
    known = [(found == p, d) for (p, _), (found, d) in zip(known_queries, opened, strict=False)]
    answered = len(known_queries) + len(stranger_queries)
    stranger_distances = [d for _, d in opened[len(known_queries) : answered]]
    for (probe, _), (found, distance) in zip(probed, opened[answered:], strict=True):
        probe.found, probe.distance = found, distance
    open_queries = [(p, n) for p in enrolled for n in query if (p, n) in vectors]
    open_queries += [(p, n) for p in strangers for n in wanted if (p, n) in vectors]
    gated_known = sum(
        1
        for (p, n), (ok, d) in zip(open_queries, known, strict=False)
        if ok and d < threshold and qualities[(p, n)].usable
    )
    gated_strangers = sum(
        1
        for (p, n), d in zip(open_queries[len(known) :], stranger_distances, strict=True)
        if d < threshold and qualities[(p, n)].usable
    )
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
        gated=(gated_known, gated_strangers),
        unusable=[
            (f"{p}/{n}", qualities[(p, n)]) for p, n in open_queries if not qualities[(p, n)].usable
        ],
        probes=[p for p, _ in probed],
    )


def probe_count(dataset: Path) -> int:
    """How many probe photos ``evaluate`` embeds for this dataset (for a progress bar)."""
    return len(people_in(dataset)) * (len(DEGRADATIONS) + len(HELD_OUT))


async def _probe(
    embedder: FaceWorkers,
    people: dict[str, dict[int, Path]],
    query: Sequence[int],
    enrolled: set[str],
    progress: Callable[[int], None] | None,
) -> list[tuple[Probe, bytes]]:
    """Every degradation and held-out variant of one query photo a person, embedded; those
    with a face, with their vectors. The face's width (which the degradations are relative
    to) comes from detecting it in the clean photo."""

    def made() -> list[tuple[Probe, bytes]]:
        model = FaceModel()
        out: list[tuple[Probe, bytes]] = []
        for index, (person, found) in enumerate(people.items()):
            numbers = [n for n in query if n in found] or sorted(found)
            number = numbers[index % len(numbers)]
            image = Image.open(found[number])
            image.load()
            rgb = image.convert("RGB")
            faces = model.detect(np.asarray(rgb))
            if not faces:
                continue
            width = float(max(faces, key=lambda box: box[2] * box[3])[2])
            seed = int(hashlib.sha256(person.encode()).hexdigest()[:8], 16)
            for d in DEGRADATIONS:
                photo = encoded(d.make(rgb, width))
                out.append((Probe(d.name, person, person in enrolled, number), photo))
            for name, make in HELD_OUT.items():
                photo = make(rgb, width, seed)
                out.append((Probe(name, person, person in enrolled, number), photo))
        return out

    photos = await asyncio.to_thread(made)
    vectors: dict[int, bytes] = {}

    async def one(index: int, probe: Probe, photo: bytes) -> None:
        try:
            face = await embedder.embed(photo)
        except LookalikeError:
            pass  # no face: the probe stays without a quality
        else:
            vectors[index] = face.vector
            probe.quality = face.quality
        if progress:
            progress(1)

    await asyncio.gather(*(one(i, p, b) for i, (p, b) in enumerate(photos)))
    # a probe without a face is counted, never queried
    return [(p, vectors[i]) for i, (p, _) in enumerate(photos) if i in vectors] + [
        (p, b"") for i, (p, _) in enumerate(photos) if i not in vectors
    ]


async def _embed_all(
    embedder: FaceWorkers,
    people: dict[str, dict[int, Path]],
    numbers: Sequence[int],
    progress: Callable[[int], None] | None,
    *,
    enrolling: bool = False,
) -> tuple[
    dict[tuple[str, int], bytes], dict[tuple[str, int], FaceQuality], list[float], list[str]
]:
    jobs = [
        (p, n, path) for p, images in people.items() for n, path in images.items() if n in numbers
    ]
    vectors: dict[tuple[str, int], bytes] = {}
    qualities: dict[tuple[str, int], FaceQuality] = {}
    seconds: list[float] = []
    failed: list[str] = []

    async def one(person: str, number: int, path: Path) -> None:
        try:
            photo = await asyncio.to_thread(path.read_bytes)
            face = await embedder.embed(photo, FacePick(enrolling=enrolling))
        except LookalikeError:
            failed.append(str(path))
        else:
            vectors[(person, number)] = face.vector
            qualities[(person, number)] = face.quality
            seconds.append(face.seconds)
        if progress:
            progress(1)

    await asyncio.gather(*(one(*job) for job in jobs))
    return vectors, qualities, seconds, failed


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
            if not vector:  # a probe in which no face was found
                answers.append((None, 2.0))
                continue
            found = await store.nearest(vector, 1)
            answers.append((found[0].person_id, found[0].distance) if found else (None, 2.0))
        return answers
    finally:
        await store.drop()
