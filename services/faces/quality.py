"""Whether a face is good enough to name or to enrol, and if not, why (reasons an app can show).

A face that is not usable is never named as a person and is never enrolled: poor enrolment
photos are what later causes wrong matches. The reasons are the ones AWS and Azure give an app
so that it can ask for another photo.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np
import numpy.typing as npt

Box = tuple[float, float, float, float]  # x, y, width, height in a Picture's pixels

# The thresholds (chosen on ORL and degraded copies of it: docs/decisions.md)
MIN_FACE_WIDTH = 40  # pixels of the upright photo (the detector's box)
MAX_BLUR = 0.765  # Measures.blur at or above this: BLURRY
SHARP_BLUR = 0.54  # Measures.blur of a typical sharp face (the score's top)
MIN_BRIGHTNESS = 42.0  # mean grey of the inner face at or below this: TOO_DARK
MAX_CLIPPED = 0.30  # share of the inner face clipped white at or above this: TOO_BRIGHT
CLIPPED_LEVEL = 250  # a grey level this high is clipped
MAX_TURN = 0.22  # the nose this far off the eyes' middle (in eye distances): TURNED_AWAY
# Where the measures are read: a square INNER_SIDE eye distances wide around the eyes and
# nose, brought to INNER_SIZE pixels, then blurred by REBLUR_SIGMA of those pixels.
INNER_SIDE = 2.4
INNER_SIZE = 64
REBLUR_SIGMA = 1.0


class Reason(StrEnum):
    """Why a face is not usable, the names the API shows."""

    SMALL_FACE = "SMALL_FACE"
    BLURRY = "BLURRY"
    TOO_DARK = "TOO_DARK"
    TOO_BRIGHT = "TOO_BRIGHT"
    TURNED_AWAY = "TURNED_AWAY"
    MORE_THAN_ONE_FACE = "MORE_THAN_ONE_FACE"  # enrolment only: the photo is ambiguous


@dataclass(frozen=True, slots=True)
class FaceQuality:
    usable: bool
    score: float  # 0 (useless) to 1 (as good as a clean ORL photo)
    reasons: tuple[Reason, ...]

    def to_dict(self) -> dict[str, object]:
        """For storage next to an enrolled face (a Hash field as JSON, or a JSON document)."""
        return {
            "usable": self.usable,
            "score": self.score,
            "reasons": [r.value for r in self.reasons],
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> FaceQuality:
        reasons = data.get("reasons") or []
        assert isinstance(reasons, list)
        return cls(
            usable=bool(data.get("usable")),
            score=float(data.get("score", 0.0)),  # type: ignore[arg-type]
            reasons=tuple(Reason(r) for r in reasons),
        )


def assess(
    rgb: npt.NDArray[np.uint8],
    box: Box,
    landmarks: npt.NDArray[np.float32],
    scale: float,
) -> FaceQuality:
    """The quality of one face.

    ``rgb`` is the picture the face was landmarked on, ``box`` the face in its pixels,
    ``landmarks`` dlib's 5 points (shape (5, 2)) in the same pixels, ``scale`` how many pixels
    of the upright photo one pixel of ``rgb`` stands for (the width a user sees is
    ``box[2] * scale``).

    Sharpness and exposure are read from the inner face (eyes to mouth, cheek to cheek) cut
    around the landmarks and brought to one size, so that they mean the same for a face of
    any size and ignore the background; the turn is read from where the nose lies between
    the eyes. The thresholds were chosen on ORL and degraded copies of it (docs/decisions.md,
    ``lookalike faces eval``).
    """
    measures = measure(rgb, box, landmarks, scale)
    reasons = [reason for reason, flagged in measures.flags() if flagged]
    return FaceQuality(usable=not reasons, score=measures.score(), reasons=tuple(reasons))


@dataclass(frozen=True, slots=True)
class Measures:
    """What ``assess`` reads from a face, each scaled so that its threshold reads plainly."""

    width: float  # pixels of the upright photo
    blur: float  # gradient energy kept after a further blur: 1 is all blur, a sharp face ~0.6
    brightness: float  # mean grey level of the inner face, 0-255
    clipped: float  # share of the inner face that is white (clipped highlights)
    turn: float  # the nose's offset from the eyes' middle, in eye distances; 0 is frontal

    def flags(self) -> list[tuple[Reason, bool]]:
        return [
            (Reason.SMALL_FACE, self.width < MIN_FACE_WIDTH),
            (Reason.BLURRY, self.blur >= MAX_BLUR),
            (Reason.TOO_DARK, self.brightness <= MIN_BRIGHTNESS),
            (Reason.TOO_BRIGHT, self.clipped >= MAX_CLIPPED),
            (Reason.TURNED_AWAY, abs(self.turn) >= MAX_TURN),
        ]

    def score(self) -> float:
        """1 for a face as good as a clean ORL photo, falling towards 0 as the worst measure
        nears its threshold (0 past it): one number to rank faces by, e.g. to pick the best
        enrolment photo."""
        margins = (
            (self.width - MIN_FACE_WIDTH) / MIN_FACE_WIDTH,
            (MAX_BLUR - self.blur) / (MAX_BLUR - SHARP_BLUR),
            (self.brightness - MIN_BRIGHTNESS) / MIN_BRIGHTNESS,
            (MAX_CLIPPED - self.clipped) / MAX_CLIPPED,
            (MAX_TURN - abs(self.turn)) / MAX_TURN,
        )
        return round(float(max(0.0, min(1.0, *margins))), 3)  # a plain float: JSON


def measure(
    rgb: npt.NDArray[np.uint8],
    box: Box,
    landmarks: npt.NDArray[np.float32],
    scale: float,
) -> Measures:
    """The measures ``assess`` judges by (``lookalike faces eval`` prints them)."""
    import cv2

    points = np.asarray(landmarks, dtype=np.float32)
    # dlib's 5 points: two corners of one eye, two of the other, the base of the nose
    eye_a, eye_b, nose = points[0:2].mean(0), points[2:4].mean(0), points[4]
    axis = eye_a - eye_b
    eyes = float(np.hypot(*axis)) or 1.0
    turn = float((nose - (eye_a + eye_b) / 2) @ axis) / eyes**2
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY) if rgb.ndim == 3 else rgb
    inner = _inner_face(cv2, gray, (eye_a + eye_b + nose) / 3, INNER_SIDE * eyes)
    energy = _gradient_energy(cv2, inner)
    reblurred = _gradient_energy(cv2, cv2.GaussianBlur(inner, (0, 0), REBLUR_SIGMA))
    return Measures(
        width=box[2] * scale,
        blur=reblurred / energy if energy > 0 else 1.0,
        brightness=float(inner.mean()),
        clipped=float((inner >= CLIPPED_LEVEL).mean()),
        turn=turn,
    )


def _inner_face(cv2: Any, gray: Any, centre: Any, side: float) -> Any:
    """A square of ``side`` pixels around ``centre``, as INNER_SIZE x INNER_SIZE floats (the
    edge repeated where the square leaves the picture)."""
    n = max(2, round(side))
    x0, y0 = round(float(centre[0]) - n / 2), round(float(centre[1]) - n / 2)
    height, width = gray.shape
    pad = max(0, -x0, -y0, x0 + n - width, y0 + n - height)
    if pad:
        gray = cv2.copyMakeBorder(gray, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        x0, y0 = x0 + pad, y0 + pad
    crop = gray[y0 : y0 + n, x0 : x0 + n]
    shrink = cv2.INTER_AREA if n > INNER_SIZE else cv2.INTER_LINEAR
    return cv2.resize(crop, (INNER_SIZE, INNER_SIZE), interpolation=shrink).astype(np.float32)


def _gradient_energy(cv2: Any, image: Any) -> float:
    dx = cv2.Sobel(image, cv2.CV_32F, 1, 0)
    dy = cv2.Sobel(image, cv2.CV_32F, 0, 1)
    return float((dx * dx + dy * dy).mean())
