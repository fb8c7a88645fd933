"""Books a search must not return: asked for and dropped here, or left out by a filter.

A search leaves out the book it starts from, the books a reader liked or disliked (recommend)
and the books a reader has seen (``exclude``). Two ways give the same answer: ask Redis for
``n + len(ids)`` hits and drop the ids here (at most that many of them can be among the hits,
so ``n`` others remain), or send one TAG negation, ``-@book_id:{1|2|...}``, and ask for ``n``.

Measured with ``bench/exclusion.py`` (figures in docs/decisions.md, "Figures that comments
used to quote"): any filter turns RediSearch's KNN into its slower filtered ("hybrid")
search, so for a few ids asking more is cheaper; but every id asked for is a hit returned and
parsed, so past a handful the filter wins by far. Where the two cross grows with the hits a
search returns anyway, hence the rule below. A mix
(the list by filter, the book itself by asking one more) was never better than the better
of the two: it pays for the filter and for the hit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from redisvl.query.filter import FilterExpression

from lookalike.services.books.filters import excluding

ASK_MORE_UP_TO = 6  # ids: at most this many (or k/4 for larger k) are asked for and dropped
MAX_RESULTS = 10_000  # Redis's default MAXSEARCHRESULTS: no search may ask for more


def by_asking(count: int, wanted: int) -> bool:
    """Whether ``count`` ids are best left out by asking ``wanted + count`` (bench/exclusion.py)."""
    return count <= max(ASK_MORE_UP_TO, wanted // 4) and wanted + count <= MAX_RESULTS


@dataclass(frozen=True, slots=True)
class LeaveOut:
    """How one search of ``wanted`` books leaves ``ids`` out."""

    ids: frozenset[str]
    wanted: int

    @property
    def asking(self) -> bool:
        return by_asking(len(self.ids), self.wanted)

    @property
    def num_results(self) -> int:
        """What to ask Redis for."""
        return self.wanted + len(self.ids) if self.asking else self.wanted

    def expression(self) -> FilterExpression | None:
        """The TAG negation when the ids are left out by filter; None otherwise."""
        return None if self.asking or not self.ids else excluding(self.ids)

    def keep(self, book_ids: Sequence[str]) -> list[int]:
        """Positions of the hits that may be returned (all of them with the filter)."""
        return [n for n, book_id in enumerate(book_ids) if book_id not in self.ids]
