"""The quality measures on ORL and on degraded copies of it: what the thresholds were chosen by.

    .venv/bin/python -m bench.face_quality [--dataset tests/data/orl] [--images 1,6]

For every degradation in a range of levels (services/faces/variants.py's functions), the
min/median/max of each measure services/faces/quality.py judges by, and how many faces earned
each reason at today's thresholds; the clean row is every photo, the others the photos
``--images`` picks of each person. A threshold belongs between the last level that should
not earn a reason and the first that should. Also the time ``assess`` takes per face.
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
from collections import Counter
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image

from bench.phone_photos import ORL
from lookalike.services.faces import quality
from lookalike.services.faces.evaluation import parse_numbers, people_in
from lookalike.services.faces.images import ImageLimits, Photo
from lookalike.services.faces.model import DECODE_SIDE, FaceModel, _finer
from lookalike.services.faces.variants import blurred, encoded, exposed, shrunk

LIMITS = ImageLimits(50_000_000, 50_000_000)
LEVELS: dict[str, Callable[[Image.Image, float], Image.Image]] = {"clean": lambda i, w: i}
for share in (0.01, 0.015, 0.02, 0.03):
    LEVELS[f"blur {share:.1%} of width"] = partial(lambda s, i, w: blurred(i, s, w), share)
for factor in (0.25, 0.35, 0.5, 1.25, 1.5, 2, 2.5):
    LEVELS[f"brightness x{factor:g}"] = partial(lambda k, i, w: exposed(i, k), factor)
for pixels in (30, 38, 45, 60):
    LEVELS[f"face {pixels} px wide"] = partial(lambda n, i, w: shrunk(i, w, n), pixels)
LEVELS["mirrored"] = lambda i, w: i.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
LEVELS["JPEG quality 10"] = lambda i, w: Image.open(io.BytesIO(encoded(i, "JPEG", quality=10)))


def measured(model: FaceModel, data: bytes) -> tuple[quality.Measures, float] | None:
    """The measures of the largest face, and the seconds ``assess`` took on it."""
    photo = Photo(data, LIMITS)
    picture = photo.pixels(photo.scale_for(DECODE_SIDE))
    faces = model.detect(picture.rgb)
    if not faces:
        return None
    box = max(faces, key=lambda b: b[2] * b[3])
    picture, (box,) = _finer(photo, picture, [box])
    shape = model.landmarks(picture.rgb, box)
    points = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)
    started = time.perf_counter()
    quality.assess(picture.rgb, box, points, float(picture.scale))
    took = time.perf_counter() - started
    return quality.measure(picture.rgb, box, points, float(picture.scale)), took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", type=Path, default=ORL)
    parser.add_argument("--images", default="1,6", help="image numbers of each person to degrade")
    args = parser.parse_args()
    model = FaceModel()
    people = people_in(args.dataset)
    chosen = set(parse_numbers(args.images))
    print(f"{'copy':22} {'faces':>7}  {'width':>11} {'blur':>17} {'brightness':>17} "
          f"{'clipped':>14} {'|turn|':>17}  reasons")  # fmt: skip
    seconds: list[float] = []
    for name, make in LEVELS.items():
        rows: list[quality.Measures] = []
        total = 0
        for images in people.values():
            for number, path in sorted(images.items()):
                if name != "clean" and number not in chosen:
                    continue
                total += 1
                image = Image.open(path).convert("RGB")
                faces = model.detect(np.asarray(image))
                width = float(max(faces, key=lambda b: b[2] * b[3])[2]) if faces else 0.0
                found = measured(model, encoded(make(image, width)))
                if found is not None:
                    rows.append(found[0])
                    seconds.append(found[1])

        def spread(values: list[float], digits: int) -> str:
            return "/".join(f"{v:.{digits}f}" for v in (min(values), statistics.median(values),
                                                        max(values)))  # fmt: skip

        reasons = Counter(r.value for m in rows for r, flagged in m.flags() if flagged)
        print(
            f"{name:22} {len(rows):>3}/{total:<3}  {spread([m.width for m in rows], 0):>11} "
            f"{spread([m.blur for m in rows], 3):>17} "
            f"{spread([m.brightness for m in rows], 1):>17} "
            f"{spread([m.clipped for m in rows], 2):>14} "
            f"{spread([abs(m.turn) for m in rows], 3):>17}  "
            + ", ".join(f"{k} {v}" for k, v in sorted(reasons.items()))
        )
    ms = sorted(1000 * s for s in seconds)
    print(f"assess: median {statistics.median(ms):.2f} ms, p99 {ms[int(0.99 * (len(ms) - 1))]:.2f} "
          f"ms a face ({len(ms)} faces)")  # fmt: skip


if __name__ == "__main__":
    main()
