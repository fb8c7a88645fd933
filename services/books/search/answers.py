"""searchBooks answers kept in the process while the catalogue stays as it was.

A HYBRID search runs a KNN and a BM25 query of 50 candidates each (several times the Redis
time of a book's ``similar``) and ranks them in Python; asked again, it would
do all of it again for the same answer. Answers are kept here per request (text, k, mode,
filter, exclusions, diversity, the fields shown) with the catalogue version they were read
at: every writer of the catalogue (a load, an index rebuild or upgrade) sets a new version in
Redis (``Catalogue.changed``), and a kept answer is served only while Redis still holds its
version, read in one round trip per request (on a cluster, from the shard that holds it; with
replicas, from the node that serves the read). A new answer reads the version in the same
pipeline as its queries, so it is labelled with the state it was computed from; an answer
that took more than one round (a pool widened for diversity) is not kept. A Redis that lost
its data has no version, which no kept answer holds.

Bounded: at most ``entries`` answers and ``matches`` books in all (a kept book's memory is
mostly its description), the least recently used going first.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class _Kept(Generic[T]):
    version: bytes
    answer: Sequence[T]


class KeptAnswers(Generic[T]):
    def __init__(self, entries: int = 1024, matches: int = 10_000) -> None:
        self.entries, self.matches = entries, matches
        self._kept: OrderedDict[Hashable, _Kept[T]] = OrderedDict()
        self._held = 0  # matches held in all

    def get(self, request: Hashable) -> tuple[bytes, Sequence[T]] | None:
        """The answer kept for this request and the version it was read at."""
        kept = self._kept.get(request)
        if kept is None:
            return None
        self._kept.move_to_end(request)
        return kept.version, kept.answer

    def put(self, request: Hashable, version: bytes, answer: Sequence[T]) -> None:
        if len(answer) > self.matches:
            return
        self.forget(request)
        self._kept[request] = _Kept(version, tuple(answer))
        self._held += len(answer)
        while len(self._kept) > self.entries or self._held > self.matches:
            _, oldest = self._kept.popitem(last=False)
            self._held -= len(oldest.answer)

    def forget(self, request: Hashable) -> None:
        old = self._kept.pop(request, None)
        if old is not None:
            self._held -= len(old.answer)

    def clear(self) -> None:
        """Forget every answer: the index they were read from may not have held every book
        (a Redis that restarted and is indexing again)."""
        self._kept.clear()
        self._held = 0

    def __len__(self) -> int:
        return len(self._kept)
