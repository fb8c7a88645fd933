"""HYBRID search: the nearest books by meaning and the best by words, in one ranking.

Only descriptions are embedded, so a reader who types a title gets books about what the title
says (the right book first for 68 of 200 sampled titles). The candidates are therefore the N
nearest books by meaning (KNN) and the N best by BM25 over title, author and description (the
keyword query), both fetched in one pipeline, and each is scored

    score = similarity + 0.5 * match ** 3

- ``similarity``: 1 - cosine distance between its description and the text (0 for a book
  with no description);
- ``match``: how far the text's words are the title's, the author's, or the title's and
  author's together: the Dice overlap of the two word multisets, 2 |T & B| / (|T| + |B|),
  words split as the index splits them, stopwords kept ("The City & the City" is not "City"):
  1 when they are the same words in any order, 0 when none is shared.

The cube keeps a partial overlap small (a descriptive text that shares one word with a
title, 0.2 to 0.3, moves the book by at most 0.014), while the exact title (1, so +0.5) comes
first whatever its description says. Measured on the shipped catalogue
(tests/services/books/search/test_title_search.py; the table in docs/decisions.md, "What the
book answers mean"): the exact title first far more often than by meaning or BM25 alone,
while descriptive texts keep most of their top five by meaning.

Reciprocal rank fusion was measured first and left: it sees ranks, not how well a text
matches, so it cannot tell a typed title from a description. At any weighting it either
missed titles or pushed the Transformers books out of the robots query's first three.
Adding normalised BM25 to the score did not find more titles and moved descriptive texts
away from their meaning (figures: docs/decisions.md, "Figures that comments used to quote").
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from lookalike.services.books.search.keyword import words

MATCH_WEIGHT = 0.5
MATCH_POWER = 3


def _dice(counts: Counter[str], size: int, other: Sequence[str]) -> float:
    """Dice overlap of the text's word multiset (``counts``, ``size`` words) with ``other``:
    1 for the same words, 0 for none in common."""
    total = size + len(other)
    if not total:
        return 0.0
    shared = sum(min(n, counts[w]) for w, n in Counter(other).items() if w in counts)
    return 2 * shared / total


@lru_cache(maxsize=8192)
def _field_words(value: str) -> tuple[str, ...]:
    """A title's or author's words, split once: the same few thousand strings come back
    search after search."""
    return tuple(words(value))


def _match(counts: Counter[str], size: int, title: str, author: str) -> float:
    """How far the text is the book's title, its author, or both ("dune frank herbert")."""
    title_words, author_words = _field_words(title), _field_words(author)
    if counts.keys().isdisjoint(title_words) and counts.keys().isdisjoint(author_words):
        # Most candidates share no word with the text; counting their multisets was most of
        # a cached HYBRID search's time (cProfile; docs/decisions.md).
        return 0.0
    return max(
        _dice(counts, size, title_words),
        _dice(counts, size, author_words),
        _dice(counts, size, (*title_words, *author_words)),
    )


def hybrid_score(similarity: float, match: float) -> float:
    return similarity + MATCH_WEIGHT * match**MATCH_POWER


@dataclass(frozen=True, slots=True)
class Candidate:
    book_id: str
    similarity: float  # 1 - cosine distance of its description to the text
    title: str
    author: str


@dataclass(frozen=True, slots=True)
class Scored:
    candidate: Candidate
    score: float


def rank_hybrid(text: str, candidates: Iterable[Candidate]) -> list[Scored]:
    """Every distinct candidate, best score first (ties: more similar, then lower id)."""
    text_words = words(text)
    counts, size = Counter(text_words), len(text_words)
    distinct = {candidate.book_id: candidate for candidate in candidates}
    scored = [
        Scored(c, hybrid_score(c.similarity, _match(counts, size, c.title, c.author)))
        for c in distinct.values()
    ]
    scored.sort(key=lambda s: (-s.score, -s.candidate.similarity, int(s.candidate.book_id)))
    return scored
