"""Photos that would cost the face worker seconds are refused from their header (issue 22).

Each hostile file of bench/hostile_photos.py goes to the real app and its real face worker,
and gets its code with no pixel decoded: ``lookalike_face_decoded_pixels_total`` (the pixels
the workers report decoding) does not move, and nothing is stored. Photos at the edge of the
limits, as phones send them, are still identified. How long each takes is the bench's job.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator

import numpy as np
import pytest
from PIL import Image
from pydantic import SecretStr
from starlette.testclient import TestClient

from bench.hostile_photos import EDGE, HOSTILE, encoded
from lookalike.schema.app import create_app
from lookalike.services.core.settings import Settings
from lookalike.services.redis.embedded import EmbeddedRedis
from tests.conftest import API_KEY, error_codes, metric, redis_dump
from tests.photos import ENROLL, IDENTIFY, orl, orl_image, send

DECODED = "lookalike_face_decoded_pixels_total"


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, str]]:
    """The app with the default limits, s2 enrolled from three photos."""
    with contextlib.ExitStack() as stack:
        server = EmbeddedRedis(tmp_path_factory.mktemp("photo-costs"))
        url = server.start()
        stack.callback(server.stop)
        settings = Settings(
            redis_url=url,
            data_dir=tmp_path_factory.mktemp("data"),
            api_keys=[SecretStr(API_KEY)],
        )
        headers = {"Authorization": f"Bearer {API_KEY}"}
        api = stack.enter_context(TestClient(create_app(settings), headers=headers))
        for number in (1, 2, 3):
            body = send(api, ENROLL, orl("s2", number), id="s2").json()
            assert "errors" not in body, body
        yield api, url


def decoded(api: TestClient) -> float:
    return metric(api.get("/metrics").text, DECODED)


def test_the_decoded_pixel_counter_counts_what_a_photo_decodes(
    app: tuple[TestClient, str],
) -> None:
    """What the refusals below rely on: an ordinary photo moves the counter by its pixels."""
    api, _ = app
    before = decoded(api)
    body = send(api, IDENTIFY, orl("s2", 7), k=1).json()
    assert body["data"]["identifyFace"]["person"]["id"] == "s2"
    assert decoded(api) - before == 92 * 112


@pytest.mark.parametrize("operation", ["identify", "enroll"])
@pytest.mark.parametrize("kind", list(HOSTILE))
def test_a_costly_photo_is_refused_before_a_pixel_is_decoded(
    app: tuple[TestClient, str], kind: str, operation: str
) -> None:
    api, redis_url = app
    _, make, code = HOSTILE[kind]
    image = make()
    stored = redis_dump(redis_url, "face*")
    before = decoded(api)
    if operation == "identify":
        body = send(api, IDENTIFY, image, k=3).json()
    else:
        body = send(api, ENROLL, image, id="s3").json()
    assert error_codes(body) == [code], body
    assert body["data"] is None
    assert decoded(api) == before
    assert redis_dump(redis_url, "face*") == stored


def test_the_refusal_says_what_is_wrong(app: tuple[TestClient, str]) -> None:
    api, _ = app
    messages = {}
    for kind in ("rle8-bmp-50000x1000", "png-16bit-rgba-7000x7000", "png-1x50000000"):
        body = send(api, IDENTIFY, HOSTILE[kind][1](), k=1).json()
        messages[kind] = body["errors"][0]["message"]
    assert "run-length encoded" in messages["rle8-bmp-50000x1000"]
    assert "16-bit" in messages["png-16bit-rgba-7000x7000"]
    assert "49,000,000 pixels" in messages["png-16bit-rgba-7000x7000"]
    assert "1 x 50,000,000" in messages["png-1x50000000"]


def test_a_12_megapixel_16_bit_png_is_refused_but_an_8_bit_one_is_not(
    app: tuple[TestClient, str],
) -> None:
    """16-bit samples count double against the pixels decoded whole."""
    api, _ = app
    face = orl_image("s2", 7).convert("L").resize((920, 1120))
    canvas = Image.new("L", (4_000, 3_000), 200)
    canvas.paste(face, (1_500, 900))
    sixteen = Image.fromarray(np.asarray(canvas, dtype=np.uint16) * 257)
    wide = send(api, IDENTIFY, encoded(sixteen, "PNG"), k=1).json()
    assert error_codes(wide) == ["IMAGE_TOO_LARGE"]
    narrow = send(api, IDENTIFY, encoded(canvas, "PNG"), k=1).json()
    assert narrow["data"]["identifyFace"]["person"]["id"] == "s2"


@pytest.mark.parametrize("kind", list(EDGE))
def test_a_photo_at_the_edge_of_the_limits_is_identified(
    app: tuple[TestClient, str], kind: str
) -> None:
    api, _ = app
    image = EDGE[kind][1]()
    width, height = Image.open(io.BytesIO(image)).size
    before = decoded(api)
    body = send(api, IDENTIFY, image, k=1).json()
    assert "errors" not in body, body["errors"]
    assert body["data"]["identifyFace"]["person"] is not None, body
    assert body["data"]["identifyFace"]["person"]["id"] == "s2"
    if Image.open(io.BytesIO(image)).format in {"JPEG", "MPO"}:  # decoded reduced
        assert 0 < decoded(api) - before <= width * height / 4
    else:
        assert decoded(api) - before == width * height
