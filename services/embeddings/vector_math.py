"""Cosine similarity in numpy, for what Redis cannot rank by itself.

Redis returns vectors as the index holds them (FLOAT16 or FLOAT32 blobs), not exactly unit
length after rounding, so every similarity here normalises both sides, as Redis's COSINE
distance does: similarity = 1 - cosine distance. Arithmetic is float64, so a ranking made here
does not depend on the order numpy sums in.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from lookalike.services.embeddings.text_model import DIMENSIONS

Matrix = npt.NDArray[np.float64]


def from_blobs(blobs: Sequence[bytes | None]) -> Matrix:
    """Vector blobs (FLOAT16 or FLOAT32, told apart by length) as unit rows; a missing blob
    (a book with no description) is a row of zeros, similar to nothing."""
    rows = np.zeros((len(blobs), DIMENSIONS), dtype=np.float64)
    for n, blob in enumerate(blobs):
        if blob is None:
            continue
        kind = np.float16 if len(blob) == DIMENSIONS * 2 else np.float32
        rows[n] = np.frombuffer(blob, dtype=kind)
    return unit_rows(rows)


def unit_rows(vectors: npt.ArrayLike) -> Matrix:
    """Each row scaled to length 1 (rows of zeros stay zeros)."""
    rows = np.atleast_2d(np.asarray(vectors, dtype=np.float64))
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    scaled: Matrix = np.divide(rows, norms, out=np.zeros_like(rows), where=norms > 0)
    return scaled


def similarities(rows: npt.ArrayLike, query: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Cosine similarity of each row to the query vector."""
    found: npt.NDArray[np.float64] = unit_rows(rows) @ unit_rows(query)[0]
    return found
