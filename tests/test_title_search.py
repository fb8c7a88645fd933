"""Title search that finds the title: 200 sampled titles, SEMANTIC, KEYWORD and HYBRID, with
the real model and the real Redis (the session's books index); descriptive texts keep what
they meant. The figures are printed (pytest -s) and the README quotes them."""

from __future__ import annotations

import anyio
from starlette.testclient import TestClient

from lookalike.services.redis_connection import open_client
from lookalike.services.settings import Settings
from lookalike.services.shipped_catalogue import read_shipped
from lookalike.services.text_embedding import text_embedder
from tests.title_search import (
    DESCRIPTIVE,
    ROBOTS,
    Ranked,
    kept_meaning,
    rank_texts,
    sample_titles,
    title_figures,
)

SHIPPED = read_shipped()
TITLES = {r["id"]: r["title"] for r in SHIPPED.records}


def ranked(settings: Settings, texts: list[str]) -> list[Ranked]:
    vectors = text_embedder().encode(texts)

    async def run() -> list[Ranked]:
        client = await open_client(settings.redis_url or "", settings.redis_timeout)
        try:
            return await rank_texts(client, settings, texts, vectors)
        finally:
            await client.aclose()

    return anyio.run(run)


def test_hybrid_puts_the_typed_title_first_for_95_percent_of_titles(
    api: TestClient, settings: Settings
) -> None:
    figures = title_figures(ranked(settings, sample_titles(SHIPPED)), TITLES)
    print(f"\ntitle search, {figures.size} sampled titles: {figures}")
    assert figures.first["HYBRID"] >= 0.95 * figures.size, figures
    # what the issue measured, and what BM25 alone does: both well short of it
    assert figures.first["SEMANTIC"] < 0.5 * figures.size, figures
    assert figures.first["SEMANTIC"] < figures.first["KEYWORD"] < figures.first["HYBRID"]


def test_descriptive_texts_keep_their_meaning_in_hybrid(
    api: TestClient, settings: Settings
) -> None:
    found = ranked(settings, list(DESCRIPTIVE))
    kept = kept_meaning(found, "HYBRID")
    print(
        f"\ndescriptive texts: HYBRID keeps {kept:.0%} of the SEMANTIC top 5, "
        f"KEYWORD {kept_meaning(found, 'KEYWORD'):.0%}"
    )
    assert kept >= 0.9
    robots = next(r for r in found if r.text == ROBOTS)
    assert all("Transformers" in TITLES[b] for b in robots.by_mode["HYBRID"][:3])
