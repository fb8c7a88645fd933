"""The title-search harness: 200 titles sampled from the catalogue (fixed seed) and a set of
descriptive texts, searched SEMANTIC, KEYWORD and HYBRID through the API (GraphQL against
the real app, model and Redis), ten texts a request, each in the three modes.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from starlette.testclient import TestClient

from lookalike.services.books.loading.shipped import ShippedCatalogue
from tests.conftest import gql

SAMPLE_SIZE = 200
SAMPLE_SEED = 14
MODES = ("SEMANTIC", "KEYWORD", "HYBRID")
TEXTS_A_REQUEST = 10  # x 3 modes: 30 aliased fields, the alias limit

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


def rank_texts(api: TestClient, texts: Sequence[str], k: int = 5) -> list[Ranked]:
    ranked: list[Ranked] = []
    for start in range(0, len(texts), TEXTS_A_REQUEST):
        chunk = texts[start : start + TEXTS_A_REQUEST]
        names = ", ".join(f"$t{n}: String!" for n in range(len(chunk)))
        fields = " ".join(
            f"{mode.lower()}{n}: searchBooks(text: $t{n}, k: {k}, mode: {mode}) {{ book {{ id }} }}"
            for n in range(len(chunk))
            for mode in MODES
        )
        body = gql(
            api, f"query({names}) {{ {fields} }}", **{f"t{n}": t for n, t in enumerate(chunk)}
        )
        assert "errors" not in body, body["errors"]
        found = body["data"]
        ranked.extend(
            Ranked(
                text,
                {mode: [m["book"]["id"] for m in found[f"{mode.lower()}{n}"]] for mode in MODES},
            )
            for n, text in enumerate(chunk)
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
