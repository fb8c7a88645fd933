"""The held-out variants of the issue (mirrored, side light, slight blur, JPEG quality 10,
tilted 10 degrees, twice the size on a busy background) and this project's tilted 30 degrees,
sent through the API: the enrolled are named, strangers are not.

Ten people are enrolled from ORL photos 1-5 (but s1/5, turned away), as ``faces eval``
enrols its open set; each variant is made of one query photo a person (6-10), the same one
``faces eval`` uses. Among
them are s6, s7 and s8, whose JPEG quality 10 copies the single-view descriptor left past the
threshold (57 of the 60 issue variants here were named with it).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from pydantic import SecretStr
from starlette.testclient import TestClient

from lookalike.schema.app import create_app
from lookalike.services.core.settings import Settings
from lookalike.services.faces.model import FaceModel
from lookalike.services.faces.variants import HELD_OUT
from lookalike.services.redis.embedded import EmbeddedRedis
from tests.conftest import API_KEY
from tests.photos import IDENTIFY, TURNED_AWAY, enrol_people, orl, orl_image, send

ENROLLED = [f"s{n}" for n in range(1, 11)]
STRANGERS = [f"s{n}" for n in range(31, 36)]
ISSUE_VARIANTS = list(HELD_OUT)[:6]  # the issue's six, in its order (variants.py)
VARIANTS = [*ISSUE_VARIANTS, "tilted 30 degrees"]


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    server = EmbeddedRedis(tmp_path_factory.mktemp("robustness"))
    url = server.start()
    try:
        settings = Settings(
            redis_url=url,
            data_dir=tmp_path_factory.mktemp("data"),
            api_keys=[SecretStr(API_KEY)],
            request_timeout=120,  # enrolments are ten views of a face: a loaded machine is slow
            face_workers=2,  # enrolled two people at a time, and the variants sent so
        )
        headers = {"Authorization": f"Bearer {API_KEY}"}
        with TestClient(create_app(settings), headers=headers) as client:
            photos = {
                person: [
                    orl(person, number)
                    for number in range(1, 6)
                    if (person, number) not in TURNED_AWAY  # refused at enrolment (s1/5)
                ]
                for person in ENROLLED
            }
            enrol_people(client, photos)
            yield client
    finally:
        server.stop()


def variants_of(person: str, index: int) -> dict[str, bytes]:
    """Every variant of the query photo ``faces eval`` takes for the index-th person."""
    number = 6 + index % 5
    image = orl_image(person, number).convert("RGB")
    boxes = FaceModel().detect(np.asarray(image))
    width = float(max(boxes, key=lambda box: box[2] * box[3])[2])
    seed = int(hashlib.sha256(person.encode()).hexdigest()[:8], 16)
    return {name: HELD_OUT[name](image, width, seed) for name in VARIANTS}


def answers(api: TestClient, people: list[str], first: int) -> dict[tuple[str, str], Any]:
    found: dict[tuple[str, str], Any] = {}
    for index, person in enumerate(people, start=first):
        for name, photo in variants_of(person, index).items():
            body = send(api, IDENTIFY, photo, k=1).json()
            assert "errors" not in body, (person, name, body)
            found[(person, name)] = body["data"]["identifyFace"]
    return found


def test_held_out_variants_of_enrolled_people_are_named(api: TestClient) -> None:
    found = answers(api, ENROLLED, 0)
    named = {key for key, answer in found.items() if (answer["person"] or {}).get("id") == key[0]}
    wrong = {key: a["person"] for key, a in found.items() if a["person"] and key not in named}
    assert not wrong, wrong  # never the wrong person
    issue = {key for key in named if key[1] in ISSUE_VARIANTS}
    missed = sorted(set(found) - named)
    # 59 of 60 measured (s8's JPEG quality 10 is 0.061 away); one more miss is allowed
    assert len(issue) >= 58, missed
    assert sum((person, "tilted 30 degrees") in named for person in ENROLLED) >= 9, missed


def test_held_out_variants_of_strangers_stay_unknown(api: TestClient) -> None:
    # strangers take the place in faces eval's order they have there (30 to 34 of 40)
    found = answers(api, STRANGERS, 30)
    assert {key: a["person"] for key, a in found.items() if a["person"]} == {}
    assert all(a["distance"] >= a["threshold"] for a in found.values())


def test_the_issue_variants_are_the_first_six() -> None:
    """ISSUE_VARIANTS slices variants.HELD_OUT: it must still start with the issue's six."""
    assert ISSUE_VARIANTS == [
        "mirrored",
        "side light",
        "slight blur",
        "JPEG quality 10",
        "tilted 10 degrees",
        "x2 on a busy background",
    ]
