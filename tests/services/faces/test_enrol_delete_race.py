"""enrollFace racing deletePerson of the same person, on a real server: an enrolment whose
face was written is answered with the person it wrote, never PERSON_NOT_FOUND. deleteFace
racing identifyFace and enrollFace of the same person leaves Redis consistent."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from lookalike.services.redis.embedded import EmbeddedRedis
from tests.conftest import API_KEY
from tests.photos import ENROLL, PREFLIGHT, TURNED_AWAY, orl
from tests.servers import serving

DELETE = "mutation($id: ID!) { deletePerson(id: $id) }"
ROUNDS = 20  # enrolments racing the deletes, each a chance for one to land inside it


async def _enrol(client: httpx.AsyncClient, person: str, image: bytes) -> dict[str, Any]:
    return await _upload(client, ENROLL, {"id": person, "name": "Racer"}, image)


async def _upload(
    client: httpx.AsyncClient, query: str, variables: dict[str, Any], image: bytes
) -> dict[str, Any]:
    """A multipart request with ``image`` as its ``$image``."""
    operations = {"query": query, "variables": {**variables, "image": None}}
    response = await client.post(
        "/graphql",
        data={"operations": json.dumps(operations), "map": json.dumps({"0": ["variables.image"]})},
        files={"0": ("photo", image, "application/octet-stream")},
        headers=PREFLIGHT,
    )
    body: dict[str, Any] = response.json()
    return body


async def _delete_until(client: httpx.AsyncClient, person: str, done: asyncio.Event) -> int:
    deleted = 0
    while not done.is_set():
        body = (
            await client.post("/graphql", json={"query": DELETE, "variables": {"id": person}})
        ).json()
        assert "errors" not in body, body
        deleted += body["data"]["deletePerson"]
    return deleted


@pytest.mark.parametrize("layout", ["hash", "json"])
def test_enrolments_racing_deletes_answer_the_person_they_wrote(
    layout: str, tmp_path: Path
) -> None:
    person = f"race-{uuid.uuid4().hex[:8]}"
    photos = [(f"s{n}", number) for n in range(1, 5) for number in range(1, 11)]
    images = [orl(*photo) for photo in photos if photo not in TURNED_AWAY][:ROUNDS]

    async def race(base: str) -> tuple[list[dict[str, Any]], int]:
        headers = {"Authorization": f"Bearer {API_KEY}"}
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=300) as client:
            done = asyncio.Event()
            deleters = [asyncio.create_task(_delete_until(client, person, done)) for _ in range(4)]
            answers = await asyncio.gather(*(_enrol(client, person, image) for image in images))
            done.set()
            deleted = sum(await asyncio.gather(*deleters))
        return list(answers), deleted

    with serving(
        tmp_path / "serve.log",
        REDIS_URL="",  # its own embedded Redis: a layout of its own
        LOOKALIKE_REDIS_URL="",
        LOOKALIKE_DATA_DIR=str(tmp_path / "data"),
        FACE_LAYOUT=layout,
        LOOKALIKE_API_KEYS=API_KEY,
        LOOKALIKE_FACE_WORKERS="2",
        # twenty photos at once queue for two face workers (an enrolment is ten views of its
        # face): the race is the point here, not the request deadline
        LOOKALIKE_REQUEST_TIMEOUT="300",
    ) as served:
        answers, deleted = asyncio.run(race(served.base))
    assert deleted > 0  # the deletes did land among the enrolments
    codes = [e["extensions"]["code"] for a in answers for e in a.get("errors", [])]
    assert "PERSON_NOT_FOUND" not in codes, codes
    assert not codes, codes
    for answer in answers:
        enrolled = answer["data"]["enrollFace"]
        assert enrolled["id"] == person
        assert enrolled["name"] == "Racer"
        assert 1 <= enrolled["faceCount"] <= ROUNDS


FACES = "query($id: ID!) { person(id: $id) { faceCount faces { id } } }"
DELETE_FACE = "mutation($id: ID!) { deleteFace(id: $id) { id faceCount } }"
IDENTIFY_FACE = """mutation($image: Upload!) { identifyFace(image: $image, k: 1) {
  candidates { distance faceId person { id } } } }"""


async def _post(client: httpx.AsyncClient, query: str, **variables: Any) -> dict[str, Any]:
    response = await client.post("/graphql", json={"query": query, "variables": variables})
    body: dict[str, Any] = response.json()
    return body


async def _later(delay: float, client: httpx.AsyncClient, face_id: str) -> dict[str, Any]:
    """A deleteFace sent after ``delay``: spread among the photos the workers are reading."""
    await asyncio.sleep(delay)
    return await _post(client, DELETE_FACE, id=face_id)


async def _identify(client: httpx.AsyncClient, image: bytes) -> dict[str, Any]:
    return await _upload(client, IDENTIFY_FACE, {}, image)


def _stored_faces(url: str, layout: str, person: str) -> tuple[set[str], set[str], int]:
    """What Redis holds for the person, read directly: the images their record lists, the
    images that have a vector, and the face count it reports."""
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        if layout == "hash":
            record = {str(k): v for k, v in client.hgetall(f"face-person:{{{person}}}").items()}
            listed = {k.removeprefix("img:") for k in record if k.startswith("img:")}
            vectors = {str(k).rsplit(":", 1)[1] for k in client.scan_iter(f"face:{{{person}}}:*")}
            return listed, vectors, int(record["face_count"])
        document: Any = client.json().get(f"face-person:{{{person}}}")
        hashes = document["image_hashes"]
        assert len(document["embeddings"]) == len(hashes)  # a vector for every face
        assert set(document["faces"]) == set(hashes)  # a record for every face, no other
        return set(hashes), set(hashes), len(hashes)
    finally:
        client.close()


@pytest.mark.parametrize("layout", ["hash", "json"])
def test_delete_face_racing_identify_and_enrolments_leaves_a_consistent_store(
    layout: str, tmp_path: Path
) -> None:
    """Five of a person's six faces deleted one by one while their photos are identified
    and six new faces are enrolled for them: every request answers, and afterwards Redis
    holds exactly the faces that should be left, each matched by its own id."""
    person = f"race-{uuid.uuid4().hex[:8]}"
    kept, deleted = orl("s1", 6), [orl("s1", n) for n in (1, 2, 3, 4, 7)]  # s1/5 is turned
    added = [orl("s2", n) for n in range(1, 7)]
    probes = [orl("s1", n) for n in (8, 9, 10)] * 4

    async def race(base: str) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {API_KEY}"}
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=300) as client:
            for image in [*deleted, kept]:
                assert "errors" not in await _enrol(client, person, image)
            before = (await _post(client, FACES, id=person))["data"]["person"]["faces"]
            doomed = [face["id"] for face in before[:5]]
            removals, enrolments, identified = await asyncio.gather(
                asyncio.gather(*(_later(n * 0.2, client, i) for n, i in enumerate(doomed))),
                asyncio.gather(*(_enrol(client, person, image) for image in added)),
                asyncio.gather(*(_identify(client, image) for image in probes)),
            )
            after = (await _post(client, FACES, id=person))["data"]["person"]
            exact = await asyncio.gather(*(_identify(client, i) for i in [*deleted, *added]))
        return {
            "before": [face["id"] for face in before],
            "answers": [*removals, *enrolments, *identified],
            "identified": identified,
            "after": after,
            "exact": exact,
        }

    server = EmbeddedRedis(tmp_path / "redis")
    url = server.start()
    try:
        with serving(
            tmp_path / "serve.log",
            REDIS_URL=url,
            LOOKALIKE_REDIS_TIMEOUT="10",  # the machine may be busy; no timing is tested
            LOOKALIKE_DATA_DIR=str(tmp_path / "data"),
            FACE_LAYOUT=layout,
            LOOKALIKE_API_KEYS=API_KEY,
            LOOKALIKE_FACE_WORKERS="2",
            LOOKALIKE_REQUEST_TIMEOUT="300",  # as above
        ) as served:
            found = asyncio.run(race(served.base))
        stored = _stored_faces(url, layout, person)
    finally:
        server.stop()
    assert not [a["errors"] for a in found["answers"] if "errors" in a]
    before, after = found["before"], found["after"]
    survivor = before[5]
    left = [face["id"] for face in after["faces"]]
    assert after["faceCount"] == len(left) == 7
    assert survivor in left
    assert not set(before[:5]) & set(left)
    listed, vectors, count = stored
    assert listed == vectors  # no vector without its record, no record without its vector
    assert count == len(listed) == 7
    ever = set(before) | set(left)
    for answer in found["identified"]:
        (candidate,) = answer["data"]["identifyFace"]["candidates"]
        assert candidate["person"]["id"] == person
        assert candidate["faceId"] in ever
    for answer in found["exact"][:5]:  # a deleted photo: only the kept face of s1 is near
        (candidate,) = answer["data"]["identifyFace"]["candidates"]
        assert candidate["faceId"] == survivor
        assert candidate["distance"] > 0.001
    new_ids = [a["data"]["identifyFace"]["candidates"][0]["faceId"] for a in found["exact"][5:]]
    assert sorted(new_ids) == sorted(set(left) - {survivor})  # each photo matched by its id
