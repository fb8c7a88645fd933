"""The title-search harness: 200 titles sampled from the catalogue (fixed seed) and a set of
descriptive texts, searched SEMANTIC, KEYWORD and HYBRID against a real Redis holding the
books index, with the services' own query builders and ranking.

For each text one pipeline carries both candidate searches (the N nearest by meaning, the N
best by BM25), as HYBRID sends them; SEMANTIC and KEYWORD read their own half.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from redisvl.query import VectorQuery

from lookalike.services.book_index import vector_bytes
from lookalike.services.book_records import VECTOR_FIELD
from lookalike.services.hybrid_ranking import Candidate, rank_hybrid
from lookalike.services.keyword_query import keyword_search
from lookalike.services.redis_connection import Redis
from lookalike.services.redis_replicas import Reads
from lookalike.services.search_pipeline import Reply, SearchPipeline
from lookalike.services.settings import Settings
from lookalike.services.shipped_catalogue import ShippedCatalogue
from lookalike.services.text_embedding import Vectors
from lookalike.services.vector_math import from_blobs

SAMPLE_SIZE = 200
SAMPLE_SEED = 14
CANDIDATES = 50
MODES = ("SEMANTIC", "KEYWORD", "HYBRID")

ROBOTS = "giant robots that transform into cars fight an ancient war"  # the README's query
DESCRIPTIVE = (
    ROBOTS,
    "a haunted house",
    "a lonely robot learns to survive on a wild island",
    "space marines fight alien bugs",
    "a boy discovers he is a wizard",
    "a father and son walk south through a burned world",
    "time travel to stop the assassination of a president",
    "a detective in a future city hunts androids",
    "a dragon and a girl become friends",
    "a war between humans and machines",
    "teenagers forced to fight to the death on television",
)


def sample_titles(shipped: ShippedCatalogue) -> list[str]:
    chosen = random.Random(SAMPLE_SEED).sample(shipped.records, SAMPLE_SIZE)
    return [record["title"] for record in chosen]


@dataclass(frozen=True)
class Ranked:
    """The book ids each mode puts first for one text, best first."""

    text: str
    by_mode: dict[str, list[str]]


def _candidates(reply: Reply, prefix: str, query: Vectors, knn: bool) -> list[Candidate]:
    found = []
    blobs = [fields.get(VECTOR_FIELD.encode()) for _, fields in reply.hits]
    similarity = from_blobs(blobs) @ (query / np.linalg.norm(query))
    for n, (key, fields) in enumerate(reply.hits):
        # a KNN hit: the distance Redis reports; a keyword hit: from its own vector (none,
        # similarity 0, for a book with no description)
        value = 1.0 - float(fields[b"vector_distance"]) if knn else float(similarity[n])
        found.append(
            Candidate(
                book_id=key.removeprefix(prefix),
                similarity=value,
                title=_text(fields.get(b"title")),
                author=_text(fields.get(b"author")),
            )
        )
    return found


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value or "")


async def rank_texts(
    client: Redis, settings: Settings, texts: Sequence[str], vectors: Vectors, k: int = 5
) -> list[Ranked]:
    pipeline = SearchPipeline(Reads(client), settings.index_name)
    prefix = settings.key_prefix + ":"
    ranked = []
    for text, vector in zip(texts, vectors, strict=True):
        nearest = VectorQuery(
            vector=vector_bytes(vector, settings.vector_type),
            vector_field_name=VECTOR_FIELD,
            return_fields=["title", "author"],
            num_results=CANDIDATES,
            ef_runtime=max(settings.hnsw_ef_runtime, CANDIDATES),
            dtype=settings.vector_type,
        )
        best_words = keyword_search(text, [], CANDIDATES, ["title", "author", VECTOR_FIELD])
        queries = [nearest] if best_words is None else [nearest, best_words]
        replies = await pipeline.run(queries)
        knn = _candidates(replies[0], prefix, vector, knn=True)
        words = _candidates(replies[1], prefix, vector, knn=False) if best_words else []
        hybrid = [s.candidate.book_id for s in rank_hybrid(text, [*knn, *words])]
        ranked.append(
            Ranked(
                text,
                {
                    "SEMANTIC": [c.book_id for c in knn][:k],
                    "KEYWORD": [c.book_id for c in words][:k],
                    "HYBRID": hybrid[:k],
                },
            )
        )
    return ranked


@dataclass(frozen=True)
class TitleFigures:
    first: dict[str, int]  # titles whose book came first, per mode
    top5: dict[str, int]
    size: int

    def __str__(self) -> str:
        return "; ".join(
            f"{mode}: first {self.first[mode]}/{self.size}, top 5 {self.top5[mode]}/{self.size}"
            for mode in MODES
        )


def title_figures(ranked: Sequence[Ranked], titles_by_id: dict[str, str]) -> TitleFigures:
    """A title counts as found when a book with exactly that title (the catalogue has a few
    titles twice) is first, or in the first five."""

    def is_it(book_id: str, title: str) -> bool:
        return titles_by_id[book_id].casefold() == title.casefold()

    first = {m: sum(is_it(r.by_mode[m][0], r.text) for r in ranked if r.by_mode[m]) for m in MODES}
    top5 = {m: sum(any(is_it(b, r.text) for b in r.by_mode[m][:5]) for r in ranked) for m in MODES}
    return TitleFigures(first, top5, len(ranked))


def kept_meaning(ranked: Sequence[Ranked], mode: str, k: int = 5) -> float:
    """How much of the SEMANTIC top k a mode keeps, averaged over the texts."""
    kept = [len(set(r.by_mode[mode][:k]) & set(r.by_mode["SEMANTIC"][:k])) / k for r in ranked]
    return float(np.mean(kept))
