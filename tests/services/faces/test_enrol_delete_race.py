"""enrollFace racing deletePerson of the same person, on a real server: an enrolment whose
face was written is answered with the person it wrote, never PERSON_NOT_FOUND."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import API_KEY
from tests.photos import ENROLL, PREFLIGHT, orl
from tests.servers import serving

DELETE = "mutation($id: ID!) { deletePerson(id: $id) }"
ROUNDS = 40


async def _enrol(client: httpx.AsyncClient, person: str, image: bytes) -> dict[str, Any]:
    operations = {"query": ENROLL, "variables": {"id": person, "name": "Racer", "image": None}}
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
    images = [orl(f"s{n}", number) for n in range(1, 5) for number in range(1, 11)][:ROUNDS]

    async def race(base: str) -> tuple[list[dict[str, Any]], int]:
        headers = {"Authorization": f"Bearer {API_KEY}"}
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as client:
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
