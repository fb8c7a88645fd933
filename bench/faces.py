"""Benchmark identifyFace against the bare model, and book queries beside face work.

Run it against a running server (``lookalike serve``), ideally with people enrolled
(``lookalike faces enroll tests/data/orl --images 1-5``):

    .venv/bin/python -m bench.faces [--url http://127.0.0.1:8000] [--dataset DIR] [--rounds 60]

The photos are --dataset's (ORL by default), laid out as ``faces enroll`` and ``faces eval``
read them: a folder per person, photos named by number; those numbered 6 to 9 are timed (the
ones ``faces eval`` queries), number 7 of each person also as a 12 MP photo.

1. identifyFace p50/p95 over HTTP (multipart upload, GraphQL, model worker, Redis KNN), against
   the embedding alone (decode, detect, embed) in this process, on the same images.
   Target: at most 1.25x.
2. identifyFace of a 12-megapixel phone photo (4032 x 3024 JPEG, an ORL face scaled x9 into
   it) against the small ORL photo of the same face, interleaved photo by photo, ``--runs``
   times: the median of each run and the ratio, and whether both found the same person.
   Target: at most 2x.
3. Book ``similar(k: 5)`` p95 while 4 identifications run at once, against the same book
   requests with nothing else running. Target: at most 2x.
4. identifyFaces of a group photo of 5 ORL faces against identifyFace of the same 5 faces
   each alone in a photo (5 requests), interleaved round by round, ``--runs`` times: the
   median of each run, the ratio, what each further face of a photo costs, and whether both
   named the same people. ``--only group`` runs this part alone.
5. The descriptor's views (model.py, step 4), in this process with no server: each photo
   embedded as identifyFace embeds it (its chip and the chip's mirror), as enrollFace does
   (ten views) and with one view (the chip alone, as before these views), interleaved photo
   by photo, ``--runs`` times. ``--only views`` runs this part alone.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import sys
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from bench.phone_photos import ORL, group, phone_photo_of, timed_upload
from lookalike.services.core.errors import BadUserInput
from lookalike.services.core.settings import get_settings
from lookalike.services.faces.evaluation import people_in
from lookalike.services.faces.images import ImageLimits, Photo
from lookalike.services.faces.model import (
    ENROLMENT_VIEWS,
    QUERY_VIEWS,
    FaceModel,
    FacePick,
    View,
)

IDENTIFY = """mutation($image: Upload!) { identifyFace(image: $image, k: 3) {
  person { id } distance candidates { person { id } distance } facesDetected } }"""
IDENTIFY_FACES = """mutation($image: Upload!) { identifyFaces(image: $image, maxFaces: 5, k: 3) {
  box { x y width height } person { id } distance } }"""
SIMILAR = "query($id: ID!) { book(id: $id) { similar(k: 5) { distance book { title } } } }"


def pct(samples: list[float], q: float) -> float:
    return float(np.percentile(samples, q))


async def identify(client: httpx.AsyncClient, url: str, image: bytes) -> float:
    return (await identified(client, url, image))[0]


async def identified(client: httpx.AsyncClient, url: str, image: bytes) -> tuple[float, str | None]:
    """Milliseconds to identify the photo over HTTP, and who it is (None: unknown)."""
    elapsed, body = await timed_upload(client, url, IDENTIFY, image)
    assert "errors" not in body, body
    person = body["data"]["identifyFace"]["person"]
    return elapsed, person["id"] if person else None


async def phone_against_small(
    url: str, pairs: list[tuple[bytes, bytes]]
) -> tuple[list[float], list[float], int]:
    """Each face as a small photo and as a 12 MP photo, alternating which goes first;
    and how many pairs got different answers."""
    small: list[float] = []
    large: list[float] = []
    differ = 0
    async with httpx.AsyncClient(timeout=60) as client:
        for n, (little, big) in enumerate(pairs):
            order = [(little, small), (big, large)]
            answers = []
            for image, times in order if n % 2 else order[::-1]:
                elapsed, who = await identified(client, url, image)
                times.append(elapsed)
                answers.append(who)
            differ += answers[0] != answers[1]
    return small, large, differ


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def group_rounds(dataset: Path) -> list[tuple[bytes, list[bytes]]]:
    """Group photos of 5 ORL people each (image 8), and each of those faces alone in a photo
    of its own, pasted at the same size."""
    people = sorted(p.name for p in dataset.glob("s*") if p.is_dir())
    rounds = []
    for start in range(0, len(people) - 4, 5):
        row = [(person, 8) for person in people[start : start + 5]]
        photo, _ = group(row)
        rounds.append((png(photo), [png(group([face])[0]) for face in row]))
    return rounds


async def group_against_singles(
    url: str, rounds: list[tuple[bytes, list[bytes]]]
) -> tuple[list[float], list[float], list[float], int]:
    """Per round: ms for the group photo, ms for its 5 faces one request each (summed), the
    mean single request; alternating which side goes first. And how many rounds named
    different people (as sets: the group's order is by size)."""
    grouped: list[float] = []
    singles: list[float] = []
    single: list[float] = []
    differ = 0
    async with httpx.AsyncClient(timeout=60) as client:

        async def the_group(image: bytes) -> list[str | None]:
            elapsed, body = await timed_upload(client, url, IDENTIFY_FACES, image)
            assert "errors" not in body, body
            grouped.append(elapsed)
            return [(f["person"] or {}).get("id") for f in body["data"]["identifyFaces"]]

        async def one_by_one(images: list[bytes]) -> list[str | None]:
            times, who = [], []
            for image in images:
                elapsed, person = await identified(client, url, image)
                times.append(elapsed)
                who.append(person)
            singles.append(sum(times))
            single.append(sum(times) / len(times))
            return who

        for photo, faces in rounds[:2]:  # warm up both sides
            await the_group(photo)
            await one_by_one(faces)
        grouped.clear()
        singles.clear()
        single.clear()
        for n, (photo, faces) in enumerate(rounds):
            if n % 2:
                a, b = await one_by_one(faces), await the_group(photo)
            else:
                b, a = await the_group(photo), await one_by_one(faces)
            differ += sorted(a, key=str) != sorted(b, key=str)
    return grouped, singles, single, differ


async def similar(client: httpx.AsyncClient, url: str, book_id: str) -> float:
    started = time.perf_counter()
    response = await client.post(url, json={"query": SIMILAR, "variables": {"id": book_id}})
    elapsed = (time.perf_counter() - started) * 1000
    assert "errors" not in response.json()
    return elapsed


async def books_beside(
    url: str, book_ids: list[str], images: list[bytes], identifiers: int
) -> tuple[list[float], int]:
    """Book latencies while ``identifiers`` clients keep identifying faces; and how many did."""
    done = asyncio.Event()
    identified = 0

    async def keep_identifying(client: httpx.AsyncClient, offset: int) -> None:
        nonlocal identified
        n = offset
        while not done.is_set():
            await identify(client, url, images[n % len(images)])
            identified += 1
            n += identifiers

    async with httpx.AsyncClient(timeout=60) as client:
        background = [asyncio.create_task(keep_identifying(client, i)) for i in range(identifiers)]
        await asyncio.sleep(0.5 if identifiers else 0)  # let the face work get going
        latencies = []
        for book_id in book_ids:
            latencies.append(await similar(client, url, book_id))
            await asyncio.sleep(0.005)
        done.set()
        await asyncio.gather(*background)
    return latencies, identified


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--dataset", type=Path, default=ORL)
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--runs", type=int, default=3, help="runs of the 12 MP comparison")
    parser.add_argument("--phone-photos", type=int, default=20, help="12 MP photos per run")
    parser.add_argument("--only", choices=["all", "group", "views"], default="all")
    args = parser.parse_args()
    url = args.url.rstrip("/") + "/graphql"
    if args.only == "group":
        group_part(url, args.dataset, args.runs)
        return
    if args.only == "views":
        views_part(args.dataset, args.rounds, args.runs)
        return
    settings = get_settings()

    try:
        people = people_in(args.dataset)
    except BadUserInput as exc:
        sys.exit(f"bench.faces: {exc.message}")
    timed = [photos[n] for photos in people.values() for n in (6, 7, 8, 9) if n in photos]
    faces = [photos[7] for photos in people.values() if 7 in photos][: args.phone_photos]
    if not faces:
        sys.exit(
            f"bench.faces: {args.dataset} holds no photo numbered 7 (DIR/<person>/7.png): "
            "the photos numbered 6 to 9 are timed, number 7 also as a 12 MP photo"
        )
    paths = timed[: args.rounds]
    images = [p.read_bytes() for p in paths]
    counted = httpx.post(url, json={"query": "{ people(first: 0) { totalCount } }"}).json()
    enrolled = counted["data"]["people"]["totalCount"]

    model = FaceModel()
    limits = ImageLimits(settings.max_image_pixels, settings.max_decoded_pixels)

    def embed_alone(image: bytes) -> float:
        started = time.perf_counter()
        model.embed(Photo(image, limits))
        return (time.perf_counter() - started) * 1000

    async def interleaved() -> tuple[list[float], list[float]]:
        """Each photo both ways, alternating which goes first: this machine's speed drifts
        by a third within a minute, so two series run one after the other do not compare."""
        http: list[float] = []
        bare: list[float] = []
        async with httpx.AsyncClient(timeout=60) as client:
            for image in images[:3]:  # load the model on both sides
                await identify(client, url, image)
                embed_alone(image)
            for n, image in enumerate(images):
                if n % 2:
                    bare.append(embed_alone(image))
                    http.append(await identify(client, url, image))
                else:
                    http.append(await identify(client, url, image))
                    bare.append(embed_alone(image))
        return http, bare

    http, bare = asyncio.run(interleaved())
    print(f"identifyFace: {len(images)} photos of {args.dataset}, {enrolled} people enrolled")
    print(f"  {'':34} {'p50 ms':>8} {'p95 ms':>8}")
    print(f"  {'identifyFace over HTTP':34} {pct(http, 50):8.1f} {pct(http, 95):8.1f}")
    print(f"  {'embedding alone (this process)':34} {pct(bare, 50):8.1f} {pct(bare, 95):8.1f}")
    print(
        f"  ratio HTTP / embedding: p50 {pct(http, 50) / pct(bare, 50):.2f}x, "
        f"p95 {pct(http, 95) / pct(bare, 95):.2f}x (target <= 1.25x)"
    )

    pairs = [(path.read_bytes(), phone_photo_of(path)) for path in faces]
    print(
        f"identifyFace: a 12 MP phone photo (4032x3024 JPEG, "
        f"{np.mean([len(b) for _, b in pairs]) / 1e6:.1f} MB) against the small photo of the "
        f"same face; {len(pairs)} faces a run, interleaved"
    )
    print(f"  {'run':6} {'small p50':>10} {'12 MP p50':>10} {'ratio':>7}  answers")
    ratios = []
    for run in range(1, args.runs + 1):
        small, large, differ = asyncio.run(phone_against_small(url, pairs))
        ratio = pct(large, 50) / pct(small, 50)
        ratios.append(ratio)
        same = f"{len(pairs) - differ}/{len(pairs)} the same"
        print(f"  {run:<6} {pct(small, 50):10.1f} {pct(large, 50):10.1f} {ratio:6.2f}x  {same}")
    print(
        f"  ratio 12 MP / small over {len(ratios)} runs: min {min(ratios):.2f}x, median "
        f"{float(np.median(ratios)):.2f}x, max {max(ratios):.2f}x (target <= 2x)"
    )

    page = httpx.post(url, json={"query": "{ books(first: 100) { edges { node { id } } } }"})
    book_ids = [edge["node"]["id"] for edge in page.json()["data"]["books"]["edges"]] * 2
    idle, _ = asyncio.run(books_beside(url, book_ids, images, 0))
    busy, identified = asyncio.run(books_beside(url, book_ids, images, 4))
    print(f"book similar(k: 5): {len(book_ids)} requests, one at a time")
    print(f"  {'':34} {'p50 ms':>8} {'p95 ms':>8}")
    print(f"  {'idle':34} {pct(idle, 50):8.1f} {pct(idle, 95):8.1f}")
    label = f"beside 4 identifications ({identified} done)"
    print(f"  {label:34} {pct(busy, 50):8.1f} {pct(busy, 95):8.1f}")
    print(f"  ratio busy / idle: p95 {pct(busy, 95) / pct(idle, 95):.2f}x (target <= 2x)")
    group_part(url, args.dataset, args.runs)
    views_part(args.dataset, args.rounds, args.runs)


def views_part(dataset: Path, rounds: int, runs: int) -> None:
    settings = get_settings()
    limits = ImageLimits(settings.max_image_pixels, settings.max_decoded_pixels)
    photos = [p[n].read_bytes() for p in people_in(dataset).values() for n in (6, 7) if n in p]
    photos = photos[:rounds]
    model = FaceModel()
    ways = {
        "one view (before)": (FacePick(), (View(),)),
        "identifyFace: QUERY_VIEWS": (FacePick(), QUERY_VIEWS),
        "enrollFace: ENROLMENT_VIEWS": (FacePick(enrolling=True), ENROLMENT_VIEWS),
    }

    def timed(photo: bytes, name: str) -> float:
        pick, views = ways[name]
        started = time.perf_counter()
        if name.startswith("one view"):  # the model's steps with a single view of the chip
            picture = Photo(photo, limits).pixels(1)
            boxes = model.detect(picture.rgb)
            shape = model.landmarks(picture.rgb, max(boxes, key=lambda b: b[2] * b[3]))
            model.describe(picture.rgb, shape, views)
        else:
            model.embed(Photo(photo, limits), pick)
        return (time.perf_counter() - started) * 1000

    print(
        f"descriptor views: {len(photos)} photos of {dataset} embedded each way in this "
        "process, interleaved (the way that goes first turns with each photo)"
    )
    print(
        f"  {'run':6}" + "".join(f" {name:>28}" for name in ways) + "   p50 ms, ratio to one view"
    )
    names = list(ways)
    for run in range(1, runs + 1):
        samples: dict[str, list[float]] = {name: [] for name in names}
        for n, photo in enumerate(photos):
            for name in names[n % 3 :] + names[: n % 3]:
                samples[name].append(timed(photo, name))
        base = pct(samples[names[0]], 50)
        cells = "".join(
            f" {pct(samples[name], 50):18.1f} ({pct(samples[name], 50) / base:5.2f}x)"
            for name in names
        )
        print(f"  {run:<6}{cells}")


def group_part(url: str, dataset: Path, runs: int) -> None:
    rounds = group_rounds(dataset)
    if not rounds:
        print(
            f"identifyFaces: no group photo: {dataset} holds fewer than 5 ORL-named people "
            "(s1, s2, ...) with a photo numbered 8, so the group part is left out"
        )
        return
    print(
        f"identifyFaces: a group photo of 5 ORL faces (1160x304 PNG) against identifyFace of "
        f"the same 5 faces each alone (264x304 PNG, 5 requests); {len(rounds)} groups a run, "
        "interleaved"
    )
    print(f"  {'run':6} {'group p50':>10} {'5 alone p50':>12} {'ratio':>7} {'+face':>7}  answers")
    ratios = []
    for run in range(1, runs + 1):
        grouped, singles, single, differ = asyncio.run(group_against_singles(url, rounds))
        ratio = pct(grouped, 50) / pct(singles, 50)
        ratios.append(ratio)
        further = (pct(grouped, 50) - pct(single, 50)) / 4  # each face after the first
        same = f"{len(rounds) - differ}/{len(rounds)} the same"
        print(
            f"  {run:<6} {pct(grouped, 50):10.1f} {pct(singles, 50):12.1f} {ratio:6.2f}x "
            f"{further / pct(single, 50):6.2f}x  {same}"
        )
    print(
        f"  ratio group / 5 alone over {len(ratios)} runs: min {min(ratios):.2f}x, median "
        f"{float(np.median(ratios)):.2f}x, max {max(ratios):.2f}x (+face: each further face "
        "of the group photo, in single-face requests)"
    )


if __name__ == "__main__":
    main()
