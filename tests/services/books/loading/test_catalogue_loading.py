"""Loading books: idempotent, re-embeds only what changed, vectors match the real model; on one
Redis and on a cluster (where a changed book is replaced by a script on its key's shard)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pytest

from lookalike.services.books.catalogue import Catalogue, VectorSearch
from lookalike.services.books.filters import BookFilter
from lookalike.services.books.index import NUMPY_TYPES
from lookalike.services.books.loading.loader import LoadSummary, load_books
from lookalike.services.books.loading.shipped import read_shipped, shipped_dir
from lookalike.services.books.loading.sources import read_source
from lookalike.services.books.records import BookFields
from lookalike.services.books.requests import SearchMode, SearchRequest
from lookalike.services.core.errors import CatalogueError
from lookalike.services.core.request_usage import track_usage
from lookalike.services.core.settings import Settings
from lookalike.services.embeddings.text_model import MODEL_NAME, text_embedder
from lookalike.services.redis.connection import open_client
from lookalike.services.redis.embedded import EmbeddedRedis
from lookalike.services.redis.indexes import fully_indexed, index_info
from tests.conftest import both_backends, scratch_catalogue

ID_ONLY = BookFields(frozenset())  # a query that returns the ids alone
OTHER_KEYS = 50_000  # what a Redis shared with other data may hold beside the books


@pytest.fixture
def scratch_settings(settings: Settings, request: pytest.FixtureRequest) -> Iterator[Settings]:
    """An index and key prefix of this test's own on the session's Redis, dropped after."""
    name = "t_" + request.node.name.replace("[", "_").replace("]", "")[:40]
    with scratch_catalogue(settings, name) as scratch:
        yield scratch


def load(settings: Settings, records: list[dict[str, Any]]) -> tuple[LoadSummary, Catalogue]:
    async def run() -> tuple[LoadSummary, Catalogue]:
        client = await open_client(settings.redis_url or "", 5)
        catalogue = Catalogue(client, settings)
        shipped = read_shipped()
        summary = await load_books(catalogue, records, shipped=shipped, embedder=text_embedder)
        await client.aclose()
        return summary, catalogue

    return anyio.run(run)


def stored_vector(settings: Settings, book_id: str) -> np.ndarray | None:
    """A book's vector as stored (in the configured type), as FLOAT32 numbers."""

    async def run() -> bytes | None:
        client = await open_client(settings.redis_url or "", 5)
        blob = await client.hget(f"{settings.key_prefix}:{book_id}", "embedding")
        await client.aclose()
        assert blob is None or isinstance(blob, bytes)
        return blob

    blob = anyio.run(run)
    if blob is None:
        return None
    return np.frombuffer(blob, dtype=NUMPY_TYPES[settings.vector_type]).astype(np.float32)


def dump(settings: Settings) -> dict[bytes, Any]:
    """Every key of the scratch catalogue with its value: to prove a reload changed nothing."""

    async def run() -> dict[bytes, Any]:
        client = await open_client(settings.redis_url or "", 5)
        keys = [k async for k in client.scan_iter(match=f"{settings.key_prefix}*")]
        values: dict[bytes, Any] = {key: await client.hgetall(key) for key in keys}
        await client.aclose()
        return values

    return anyio.run(run)


SAMPLE = [r for r in read_shipped().records if r["id"] in {"9", "15", "1070", "26415", "942"}]


@both_backends
def test_loading_twice_changes_nothing(scratch_settings: Settings) -> None:
    first, _ = load(scratch_settings, SAMPLE)
    before = dump(scratch_settings)
    second, _ = load(scratch_settings, SAMPLE)
    assert (first.added, first.embedded) == (5, 0)
    assert (second.added, second.updated, second.unchanged, second.embedded) == (0, 0, 5, 0)
    assert dump(scratch_settings) == before


@both_backends
def test_only_a_changed_description_is_embedded_again(scratch_settings: Settings) -> None:
    load(scratch_settings, SAMPLE)
    original_9 = stored_vector(scratch_settings, "9")
    edited = [dict(r) for r in SAMPLE]
    new_text = "A lighthouse keeper befriends a whale that sings about the stars."
    for record in edited:
        if record["id"] == "15":
            record["description"] = new_text
        if record["id"] == "9":
            record["title"] = "Transformers: The Ultimate Guide (revised)"

    summary, _ = load(scratch_settings, edited)

    assert (summary.updated, summary.unchanged, summary.embedded) == (2, 3, 1)
    np.testing.assert_array_equal(stored_vector(scratch_settings, "9"), original_9)
    expected = text_embedder().encode([new_text])[0]
    assert float(stored_vector(scratch_settings, "15") @ expected) > 0.9999


@both_backends
def test_a_new_book_is_embedded_with_the_real_model(scratch_settings: Settings) -> None:
    book = dict(SAMPLE[0], id="900001", description="Robots from space fight over Earth.")
    summary, _ = load(scratch_settings, [book])
    assert (summary.added, summary.embedded) == (1, 1)
    vector = stored_vector(scratch_settings, "900001")
    assert vector is not None
    assert vector.shape == (384,)
    assert np.linalg.norm(vector) == pytest.approx(1, abs=1e-3)  # FLOAT16: 11-bit numbers


def test_shipped_vectors_match_the_model_on_sampled_descriptions() -> None:
    shipped = read_shipped()
    rng = np.random.default_rng(20261125)
    candidates = [r for r in shipped.records if r["description"].strip()]
    sample = [candidates[i] for i in rng.choice(len(candidates), 24, replace=False)]
    fresh = text_embedder().encode([r["description"] for r in sample])
    for record, vector in zip(sample, fresh, strict=True):
        stored = shipped.vector_for(record["description"])
        assert stored is not None
        similarity = float(vector @ stored / (np.linalg.norm(vector) * np.linalg.norm(stored)))
        assert similarity >= 0.999, record["id"]


def test_manifest_names_the_model_and_hashes_every_description() -> None:
    manifest = json.loads((shipped_dir() / "manifest.json").read_text())
    shipped = read_shipped()
    assert manifest["model"] == MODEL_NAME
    assert manifest["dimensions"] == 384
    assert len(shipped.records) == manifest["books"] == 1486
    described = {r["description"] for r in shipped.records if r["description"].strip()}
    assert len(manifest["vectors"]) == len(described) == shipped.vectors.shape[0]
    assert all(shipped.vector_for(text) is not None for text in described)


def test_a_source_folder_with_a_bad_record_is_refused(tmp_path: Path) -> None:
    (tmp_path / "1.json").write_text(json.dumps({"id": "abc", "title": "t", "author": "a"}))
    with pytest.raises(CatalogueError, match=r"1\.json"):
        list(read_source(tmp_path))
    with pytest.raises(CatalogueError, match="no such file or folder"):
        list(read_source(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(CatalogueError, match="holds no books"):
        list(read_source(tmp_path / "empty"))


@both_backends
def test_a_field_a_changed_record_no_longer_has_is_gone_from_the_stored_book(
    scratch_settings: Settings,
) -> None:
    load(scratch_settings, SAMPLE)
    edited = [dict(r) for r in SAMPLE]
    book_9 = next(r for r in edited if r["id"] == "9")
    del book_9["year_published"]
    book_9["genres"] = []
    summary, _ = load(scratch_settings, edited)
    assert (summary.updated, summary.unchanged) == (1, 4)

    async def read() -> tuple[dict[Any, Any], list[str]]:
        client = await open_client(scratch_settings.redis_url or "", 5)
        stored = await client.hgetall(f"{scratch_settings.key_prefix}:9")
        vector = stored[b"embedding"]
        assert isinstance(vector, bytes)
        search = VectorSearch(vector, 4, BookFilter(year_from=1900), ID_ONLY)
        since_1900 = await Catalogue(client, scratch_settings).nearest([search])
        await client.aclose()
        return stored, [match.book.id for match in since_1900[0]]

    stored, found = anyio.run(read)
    assert b"year_published" not in stored
    assert b"genres" not in stored
    assert len(stored[b"embedding"]) in (768, 1536)  # the vector stayed: same description
    # a year filter cannot match a book without a year (1070 has no vector)
    assert set(found) == {"15", "942", "26415"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"id": "0012"}, "without leading zeros"),
        ({"genres": ["horror|gothic"]}, "genres: a genre must not contain '|'"),
        ({"genres": "horror"}, "genres: must be a list of strings"),
        ({"pages": "300"}, "pages: must be an integer"),
        ({"inventory": [{"stock_id": "1"}]}, "inventory: must be a list"),
        ({"metrics": {"score": "high"}}, "metrics.score: must be a number"),
    ],
)
def test_a_record_the_stored_layout_cannot_hold_is_refused(
    tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    (tmp_path / "1.json").write_text(json.dumps(dict(SAMPLE[0], **change)))
    with pytest.raises(CatalogueError, match=re.escape(message)):
        list(read_source(tmp_path))


@both_backends
def test_a_kept_search_answer_is_served_until_the_catalogue_changes(
    scratch_settings: Settings, backend: str
) -> None:
    """searchBooks answers are kept per process with the catalogue's version: asked again,
    one round trip (the version) and no search; after a load changes a book, or where Redis
    holds no version, the search runs again and shows what is stored now. A search reads the
    version and the index's state in its own pipeline (a cluster's pipeline runs on several
    nodes at once: there, one round trip before the searches')."""
    searching = 2 if backend == "cluster" else 1
    load(scratch_settings, SAMPLE)
    (vector,) = text_embedder().encode(["giant robots that transform"])  # the text below
    titles = BookFields(frozenset({"title"}))
    requests = [
        SearchRequest("giant robots that transform", 5, fields=titles, mode=mode)
        for mode in SearchMode
    ]

    async def search(catalogue: Catalogue) -> tuple[list[list[tuple[str, str]]], int]:
        usage = track_usage()
        found = await catalogue.search(requests, [vector.tobytes()] * len(requests))
        return [[(m.book.id, m.book.title) for m in answer] for answer in found], (
            usage.round_trips
        )

    async def indexed(catalogue: Catalogue) -> None:
        """Until the catalogue knows the index holds every book (a cluster's shards report it
        a moment later; a server's index watch asks every 2 seconds): an answer read before
        is not kept."""
        for _ in range(200):
            status = await catalogue.current_status()
            if status.exists and status.percent_indexed >= 1:
                return
            await anyio.sleep(0.05)
        raise AssertionError("the index never finished indexing")

    async def scenario() -> None:
        client = await open_client(scratch_settings.redis_url or "", 5)
        catalogue = Catalogue(client, scratch_settings)
        await indexed(catalogue)
        first, trips = await search(catalogue)
        assert trips == searching
        assert all(answer for answer in first)
        again, trips = await search(catalogue)
        assert (again, trips) == (first, 1)  # the version alone

        book_id = first[0][0][0]  # a load elsewhere retitles the nearest book
        record = next(r for r in SAMPLE if r["id"] == book_id)
        await load_books(
            Catalogue(client, scratch_settings),
            [{**record, "title": "A Title Changed Since"}],
            shipped=read_shipped(),
            embedder=text_embedder,
        )
        await indexed(catalogue)
        after, trips = await search(catalogue)
        assert trips == 1 + searching  # the version, then the searches again
        assert after[0][0] == (book_id, "A Title Changed Since")
        retitled = [answer for answer in after if (book_id, "A Title Changed Since") in answer]
        assert len(retitled) == len(after)  # every mode searched again shows the new title

        await client.delete(catalogue.version_key)  # a Redis that lost it: nothing is kept
        for _ in range(2):
            _, trips = await search(catalogue)
            assert trips == 1 + searching
        await client.aclose()

    anyio.run(scenario)


def test_a_fresh_index_over_many_other_keys_is_whole_when_the_load_returns(
    tmp_path: Path,
) -> None:
    """FT.CREATE scans the keys already in Redis in the background; the loader writes once
    that scan is over. Written during it, the books were indexed as they arrived and again
    when the scan reached them, and the index was still scanning after the load returned
    (100,000 books beside 300,000 other keys: searchable 442 s after a 137 s load)."""
    server = EmbeddedRedis(tmp_path / "redis")
    url = server.start()
    settings = Settings(redis_url=url, data_dir=tmp_path, index_name="fresh", key_prefix="fresh")

    async def run() -> dict[str, Any] | None:
        client = await open_client(url, 30)
        try:
            async with client.pipeline(transaction=False) as pipe:
                for n in range(OTHER_KEYS):
                    pipe.set(f"other:{n}", "x")
                await pipe.execute()
            shipped = read_shipped()
            catalogue = Catalogue(client, settings)
            await load_books(catalogue, shipped.records, shipped=shipped, embedder=text_embedder)
            return await index_info(client, "fresh")
        finally:
            await client.aclose()

    try:
        info = anyio.run(run)
    finally:
        server.stop()
    assert info is not None
    assert fully_indexed(info), {k: info[k] for k in ("indexing", "percent_indexed")}
    assert int(info["num_docs"]) == len(read_shipped().records)
