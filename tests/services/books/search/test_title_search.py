"""Title search that finds the title: 200 sampled titles searched SEMANTIC, KEYWORD and
HYBRID through the API (the real app, model and Redis); descriptive texts keep what they
meant. The figures are printed (pytest -s) and the README quotes them."""

from __future__ import annotations

from starlette.testclient import TestClient

from lookalike.services.books.loading.shipped import read_shipped
from tests.title_search import (
    DESCRIPTIVE,
    ROBOTS,
    kept_meaning,
    rank_texts,
    sample_titles,
    title_figures,
)

SHIPPED = read_shipped()
TITLES = {r["id"]: r["title"] for r in SHIPPED.records}


def test_hybrid_puts_the_typed_title_first_for_95_percent_of_titles(api: TestClient) -> None:
    figures = title_figures(rank_texts(api, sample_titles(SHIPPED)), TITLES)
    print(f"\ntitle search, {figures.size} sampled titles: {figures}")
    assert figures.first["HYBRID"] >= 0.95 * figures.size, figures
    # what the issue measured, and what BM25 alone does: both well short of it
    assert figures.first["SEMANTIC"] < 0.5 * figures.size, figures
    assert figures.first["SEMANTIC"] < figures.first["KEYWORD"] < figures.first["HYBRID"]


def test_descriptive_texts_keep_their_meaning_in_hybrid(api: TestClient) -> None:
    found = rank_texts(api, list(DESCRIPTIVE))
    kept = kept_meaning(found, "HYBRID")
    print(
        f"\ndescriptive texts: HYBRID keeps {kept:.0%} of the SEMANTIC top 5, "
        f"KEYWORD {kept_meaning(found, 'KEYWORD'):.0%}"
    )
    assert kept >= 0.9
    robots = next(r for r in found if r.text == ROBOTS)
    assert all("Transformers" in TITLES[b] for b in robots.by_mode["HYBRID"][:3])
