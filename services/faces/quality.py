"""Whether a face is good enough to name or to enrol, and if not, why (reasons an app can show).

A face that is not usable is never named as a person and is never enrolled: poor enrolment
photos are what later causes wrong matches. The reasons are the ones AWS and Azure give an app
so that it can ask for another photo.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import numpy.typing as npt

Box = tuple[float, float, float, float]  # x, y, width, height in a Picture's pixels

MIN_FACE_WIDTH = 40  # pixels of the upright photo


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
    """
    reasons: list[Reason] = []
    width = box[2] * scale
    if width < MIN_FACE_WIDTH:
        reasons.append(Reason.SMALL_FACE)
    score = max(0.0, min(1.0, width / (2 * MIN_FACE_WIDTH)))
    return FaceQuality(usable=not reasons, score=score, reasons=tuple(reasons))
