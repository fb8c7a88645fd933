"""Facets that narrow a vector search, run inside Redis in the same query.

Each filter becomes a RediSearch pre-filter on indexed TAG and NUMERIC fields, so
``similar(k: 5, filter: {genres: ["horror"]})`` returns the 5 nearest horror books, not the
horror books among the 5 nearest. Semantics: a list matches any of its values; different
fields must all match; genres and authors match whole values as stored, ignoring case; an
unknown value matches nothing (it is not an error).

Tag values are escaped here, every character that is not a letter or a digit: RedisVL leaves
``_`` and a backtick as they are, and ``@author:{_}`` is a syntax error in RediSearch, so a
filter of such a value would have failed inside Redis.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from functools import lru_cache

from redisvl.query.filter import FilterExpression, Num, Tag

from lookalike.services.books.index import BOOK_ID_TAG
from lookalike.services.core.errors import BadUserInput, check_range, check_text

MAX_VALUES = 50
MAX_VALUE_LENGTH = 200


@dataclass(frozen=True, slots=True)
class BookFilter:
    genres: tuple[str, ...] | None = None
    authors: tuple[str, ...] | None = None
    year_from: int | None = None
    year_to: int | None = None
    min_rating: float | None = None
    available: bool | None = None

    def validate(self) -> None:
        """Refuse values no query needs. A filter from a variable arrives at every field of a
        level (6,000 times in one request was seen): each distinct one is checked once."""
        _validate(self)

    def _check(self) -> None:
        for name, values in (("genres", self.genres), ("authors", self.authors)):
            if values is None:
                continue
            if len(values) > MAX_VALUES:
                raise BadUserInput(
                    f"filter.{name} takes at most {MAX_VALUES} values", argument=name
                )
            if any(not v.strip() or len(v) > MAX_VALUE_LENGTH for v in values):
                raise BadUserInput(
                    f"filter.{name}: each value is 1 to {MAX_VALUE_LENGTH} characters",
                    argument=name,
                )
            for value in values:
                check_text(f"filter.{name}", value)
        if self.min_rating is not None:
            check_range("minRating", self.min_rating, 0, 5)
        for name, year in (("yearFrom", self.year_from), ("yearTo", self.year_to)):
            if year is not None:
                check_range(name, year, -5000, 5000)

    def expression(self) -> FilterExpression | None:
        """The pre-filter, or None when nothing is asked for."""
        parts: list[FilterExpression] = []
        if self.genres is not None:
            parts.append(_any_tag("genres", self.genres))
        if self.authors is not None:
            parts.append(_any_tag("author", self.authors))
        if self.year_from is not None:
            parts.append(Num("year_published") >= self.year_from)
        if self.year_to is not None:
            parts.append(Num("year_published") <= self.year_to)
        if self.min_rating is not None:
            parts.append(Num("rating") >= self.min_rating)
        if self.available is True:
            parts.append(Tag("inventory_status") == "available")
        elif self.available is False:
            parts.append(Tag("inventory_status") != "available")
        if not parts:
            return None
        combined = parts[0]
        for part in parts[1:]:
            combined = combined & part
        return combined

    def matches_nothing(self) -> bool:
        """An empty any-of list can match no book (and RediSearch has no syntax for it)."""
        return self.genres == () or self.authors == ()


@lru_cache(maxsize=256)
def _validate(facets: BookFilter) -> None:
    facets._check()  # the class's own check, cached per distinct filter


def _any_tag(field: str, values: tuple[str, ...]) -> FilterExpression:
    """``@field:{a|b}``: any of the values, each matched whole."""
    escaped = "|".join(_escape(value.strip()) for value in values)
    return FilterExpression(f"@{field}:{{{escaped}}}")


def _escape(value: str) -> str:
    return "".join(c if c.isalnum() else "\\" + c for c in value)


NO_FILTER = BookFilter()


def excluding(book_ids: Collection[str]) -> FilterExpression | None:
    """Every book but these, as one TAG negation (``-@book_id:{1|2|...}``); None for none."""
    if not book_ids:
        return None
    return Tag(BOOK_ID_TAG) != sorted(book_ids)
