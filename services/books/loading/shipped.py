"""The catalogue that ships in ``data/``: book records, their vectors and a manifest.

Shipping the vectors means a fresh server loads 1,486 books in about a second with no model
run. The manifest names the model and keys every vector by the SHA-256 of the description it
embeds, so a loader can tell which shipped vectors still fit a (possibly edited) catalogue.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from lookalike.services.books.records import sha256_text, validate_record
from lookalike.services.core.errors import CatalogueError
from lookalike.services.embeddings.text_model import DIMENSIONS, MODEL_NAME, TextEmbedder, Vectors

BOOKS_FILE = "books.jsonl"
VECTORS_FILE = "book_vectors.npy"
MANIFEST_FILE = "manifest.json"


def shipped_dir() -> Path:
    """The ``data/`` folder of the installed package (editable or wheel)."""
    return Path(str(resources.files("lookalike.data")))


@dataclass(frozen=True)
class ShippedCatalogue:
    records: list[dict[str, Any]]
    vectors: Vectors
    row_by_description: dict[str, int]  # description sha256 -> row in ``vectors``
    model: str

    def matrix(self, records: Sequence[dict[str, Any]]) -> Vectors:
        """The vectors of these records (each must have a shipped description), row by row."""
        rows = [self.row_by_description[sha256_text(r["description"])] for r in records]
        return self.vectors[rows]

    def vector_for(self, description: str) -> Vectors | None:
        row = self.row_by_description.get(sha256_text(description))
        return None if row is None else self.vectors[row]


def read_shipped(folder: Path | None = None) -> ShippedCatalogue:
    folder = folder or shipped_dir()
    try:
        manifest = json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8"))
        vectors = np.load(folder / VECTORS_FILE, allow_pickle=False)
        lines = (folder / BOOKS_FILE).read_text(encoding="utf-8").rstrip("\n").split("\n")
    except (OSError, ValueError) as exc:
        raise CatalogueError(f"cannot read the shipped catalogue in {folder}: {exc}") from exc
    if manifest.get("model") != MODEL_NAME or vectors.shape[1:] != (DIMENSIONS,):
        raise CatalogueError(
            f"{folder / MANIFEST_FILE} was made with {manifest.get('model')!r} "
            f"({vectors.shape[1:]}), this build embeds with {MODEL_NAME} ({DIMENSIONS})"
        )
    records = [
        validate_record(json.loads(line), f"{folder / BOOKS_FILE}:{n}")
        for n, line in enumerate(lines, 1)
    ]
    rows = {entry["description_sha256"]: entry["row"] for entry in manifest["vectors"]}
    return ShippedCatalogue(records, vectors.astype(np.float32, copy=False), rows, MODEL_NAME)


def write_shipped(
    records: Sequence[dict[str, Any]], embedder: TextEmbedder, folder: Path, *, progress: bool
) -> int:
    """Embed every distinct non-empty description once and write the three files.

    Returns the number of vectors written. Used by ``lookalike books pack``; the files in the
    repository were made by it from the course's dataset.
    """
    ordered = sorted(records, key=lambda r: int(r["id"]))
    descriptions = _distinct_descriptions(r["description"] for r in ordered)
    vectors = embedder.encode(descriptions, progress=progress)
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / BOOKS_FILE).open("w", encoding="utf-8") as out:
        for record in ordered:
            out.write(json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n")
    np.save(folder / VECTORS_FILE, vectors, allow_pickle=False)
    manifest = {
        "model": MODEL_NAME,
        "dimensions": DIMENSIONS,
        "dtype": "float32",
        "distance": "cosine",
        "normalized": True,
        "books": len(ordered),
        "vectors": [
            {"description_sha256": sha256_text(text), "row": row}
            for row, text in enumerate(descriptions)
        ],
    }
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return len(descriptions)


def _distinct_descriptions(texts: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    for text in texts:
        if text.strip():
            seen.setdefault(text, None)
    if not seen:
        raise CatalogueError("no book has a description to embed")
    return list(seen)
