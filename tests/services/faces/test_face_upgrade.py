"""A Redis that an earlier version filled: its face index and key names are brought up to date
on start, in place, with nothing lost.

The earlier version (before hash tags and exact ids) created the face index with a
case-insensitive TAG for person ids, and named keys ``face:<person>:<hash>`` and
``face-person:<person>``. Here a fresh real Redis gets exactly that: the old FT.CREATE typed
by hand, and people enrolled as that version wrote them (real vectors from the real model),
among them ``probe-a`` and ``PROBE-A``, which the old index could not tell apart. Then the
new code starts on it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
from pydantic import SecretStr
from starlette.testclient import TestClient

from lookalike.schema.app import create_app
from lookalike.services.core.settings import Settings
from lookalike.services.faces.images import ImageLimits, Photo
from lookalike.services.faces.model import FaceModel
from lookalike.services.redis.embedded import EmbeddedRedis
from tests.conftest import API_KEY, error_codes, gql
from tests.photos import ENROLL, IDENTIFY, PERSON, VERIFY, orl, send

OLD_VECTOR = "VECTOR HNSW 8 TYPE FLOAT32 DIM 128 DISTANCE_METRIC COSINE EF_RUNTIME 100"
OLD_INDEXES = {  # what RedisVL sent for the earlier version's schemas
    "hash": "FT.CREATE faces_hash ON HASH PREFIX 1 face: SCHEMA "
    f"person_id TAG SEPARATOR , embedding {OLD_VECTOR}",
    "json": "FT.CREATE faces_json ON JSON PREFIX 1 face-person: SCHEMA "
    f"$.id AS person_id TAG SEPARATOR , $.embeddings[*] AS embedding {OLD_VECTOR}",
}
PEOPLE = {"s1": ("s1", "One"), "probe-a": ("s5", None), "PROBE-A": ("s6", "Probe")}
PHOTOS = (1, 2, 3)


def enrol_as_the_old_version(client: redis.Redis, layout: str, model: FaceModel) -> None:
    client.set("faces:layout", layout)
    for person_id, (source, name) in PEOPLE.items():
        photos = [orl(source, n) for n in PHOTOS]
        hashes = [hashlib.sha256(p).hexdigest() for p in photos]
        limits = ImageLimits(10_000_000, 10_000_000)
        vectors = [model.embed(Photo(p, limits)).vector for p in photos]
        if layout == "hash":
            for image_hash, vector in zip(hashes, vectors, strict=True):
                client.hset(
                    f"face:{person_id}:{image_hash[:32]}",
                    mapping={
                        "person_id": person_id,
                        "embedding": vector,
                        "image_sha256": image_hash,
                    },
                )
                client.hincrby(f"face-person:{person_id}", "face_count", 1)
            if name:
                client.hset(f"face-person:{person_id}", "name", name)
        else:
            floats = [np.frombuffer(v, dtype=np.float32).tolist() for v in vectors]
            document: dict[str, Any] = {"id": person_id, "name": name, "image_hashes": hashes}
            document["embeddings"] = floats
            client.json().set(f"face-person:{person_id}", "$", document)
        client.zadd("faces:people", {person_id: 0})


@pytest.fixture(scope="module")
def model() -> FaceModel:
    return FaceModel()


@pytest.fixture(params=["hash", "json"])
def upgraded(
    request: pytest.FixtureRequest, tmp_path: Path, model: FaceModel
) -> Iterator[tuple[TestClient, redis.Redis, str]]:
    layout = request.param
    server = EmbeddedRedis(tmp_path / "redis")
    url = server.start()
    client = redis.Redis.from_url(url)
    try:
        client.execute_command(*OLD_INDEXES[layout].split())  # type: ignore[no-untyped-call]
        enrol_as_the_old_version(client, layout, model)
        old_index = client.ft(f"faces_{layout}").info()  # type: ignore[no-untyped-call]
        assert "CASESENSITIVE" not in str(old_index["attributes"])
        settings = Settings(
            redis_url=url, data_dir=tmp_path / "data", face_layout=layout,
            api_keys=[SecretStr(API_KEY)],
        )  # fmt: skip
        headers = {"Authorization": f"Bearer {API_KEY}"}
        with TestClient(create_app(settings), headers=headers) as api:
            yield api, client, layout
    finally:
        client.close()
        server.stop()


def test_old_key_names_are_renamed_and_the_index_rebuilt(
    upgraded: tuple[TestClient, redis.Redis, str],
) -> None:
    _, client, layout = upgraded
    keys = sorted(k.decode() for k in client.scan_iter("face*"))
    people = [f"face-person:{{{p}}}" for p in PEOPLE]
    if layout == "hash":
        faces = [k for k in keys if k.startswith("face:")]
        assert len(faces) == len(PEOPLE) * len(PHOTOS)
        assert all(k.split(":")[1] in {f"{{{p}}}" for p in PEOPLE} for k in faces)
    shared = {"faces:layout", "faces:people", "faces:keys-version", "faces:face-id-key"}
    assert sorted(set(keys) - shared) == sorted(
        [*people, *([k for k in keys if k.startswith("face:")] if layout == "hash" else [])]
    )
    index = client.ft(f"faces_{layout}").info()  # type: ignore[no-untyped-call]
    assert "CASESENSITIVE" in str(index["attributes"])
    assert int(index["num_docs"]) == (len(PEOPLE) * len(PHOTOS) if layout == "hash" else 3)
    assert client.get(f"index-definition:faces_{layout}")  # the new definition is recorded


def test_every_person_is_still_there_and_found(
    upgraded: tuple[TestClient, redis.Redis, str],
) -> None:
    api, _, _ = upgraded
    listed = gql(api, "{ people(first: 10) { totalCount edges { node { id name faceCount } } } }")
    assert [e["node"] for e in listed["data"]["people"]["edges"]] == [
        {"id": "PROBE-A", "name": "Probe", "faceCount": 3},
        {"id": "probe-a", "name": None, "faceCount": 3},
        {"id": "s1", "name": "One", "faceCount": 3},
    ]
    for person_id, (source, _) in PEOPLE.items():
        found = send(api, IDENTIFY, orl(source, 8), k=3).json()["data"]["identifyFace"]
        assert (found["person"] or {}).get("id") == person_id
        verified = send(api, VERIFY, orl(source, 8), id=person_id).json()["data"]["verifyFace"]
        assert verified["match"] is True


def test_after_the_upgrade_ids_that_differ_in_case_are_apart(
    upgraded: tuple[TestClient, redis.Redis, str],
) -> None:
    api, client, _ = upgraded
    assert gql(api, 'mutation { deletePerson(id: "probe-a") }')["data"] == {"deletePerson": True}
    assert error_codes(gql(api, PERSON, id="probe-a")) == ["PERSON_NOT_FOUND"]
    kept = gql(api, PERSON, id="PROBE-A")["data"]["person"]
    assert kept == {"id": "PROBE-A", "name": "Probe", "faceCount": 3}
    found = send(api, IDENTIFY, orl("s6", 9), k=3).json()["data"]["identifyFace"]
    assert found["person"]["id"] == "PROBE-A"
    assert not [k for k in client.scan_iter("face*{probe-a}*")]


FACES = """query($id: ID!) { person(id: $id) { faceCount
  faces { id addedAt recorded quality { usable score reasons } } } }"""
UNRECORDED = {
    "addedAt": "1970-01-01T00:00:00.000Z",
    "recorded": False,
    "quality": {"usable": True, "score": 0.0, "reasons": []},
}


def test_faces_enrolled_before_times_and_qualities_list_as_not_recorded(
    upgraded: tuple[TestClient, redis.Redis, str],
) -> None:
    """The photo was never kept, so nothing can be measured again: each old face lists with
    a stable id and the placeholders ``recorded: false`` announces; it can be matched and
    deleted like any other, and a new face beside them is recorded."""
    api, _, _ = upgraded
    old = gql(api, FACES, id="s1")["data"]["person"]["faces"]
    assert [{k: v for k, v in face.items() if k != "id"} for face in old] == [UNRECORDED] * 3
    ids = [face["id"] for face in old]
    assert len(set(ids)) == 3
    assert ids == sorted(ids)  # no time recorded: in id order
    assert gql(api, FACES, id="s1")["data"]["person"]["faces"] == old  # stable

    found = send(api, IDENTIFY.replace("candidates {", "candidates { faceId"), orl("s1", 8), k=1)
    assert found.json()["data"]["identifyFace"]["candidates"][0]["faceId"] in ids

    added = send(api, ENROLL, orl("s1", 4), id="s1").json()
    assert added["data"]["enrollFace"]["faceCount"] == 4
    faces = gql(api, FACES, id="s1")["data"]["person"]["faces"]
    assert faces[:3] == old  # the old ones first (no time), the new one last, recorded
    assert faces[3]["recorded"] is True
    assert faces[3]["addedAt"] > "2020"

    deleted = gql(api, "mutation($id: ID!) { deleteFace(id: $id) { faceCount } }", id=ids[1])
    assert deleted["data"] == {"deleteFace": {"faceCount": 3}}
    left = gql(api, FACES, id="s1")["data"]["person"]["faces"]
    assert [face["id"] for face in left] == [ids[0], ids[2], faces[3]["id"]]
