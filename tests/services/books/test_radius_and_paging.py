"""withinRadius against exact search, and paging through books and radius matches."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from lookalike.services.books.loading.shipped import read_shipped
from lookalike.services.core.settings import Settings
from tests.conftest import both_backends, distance_tolerance, gql

pytestmark = both_backends

RADIUS = """query($id: ID!, $r: Float!, $first: Int!, $offset: Int!) {
  book(id: $id) { withinRadius(r: $r, first: $first, offset: $offset) {
    totalCount matches { distance book { id } } } } }"""


def exact_within(book_id: str, radius: float) -> dict[str, float]:
    """Brute-force cosine distances over the shipped vectors (numpy), the book excluded."""
    shipped = read_shipped()
    records = [r for r in shipped.records if r["description"].strip()]
    vectors = shipped.matrix(records)
    mine = vectors[next(i for i, r in enumerate(records) if r["id"] == book_id)]
    distances = 1 - vectors @ mine
    return {
        r["id"]: float(d)
        for r, d in zip(records, distances, strict=True)
        if d <= radius and r["id"] != book_id
    }


@pytest.mark.parametrize(
    ("book_id", "radius"), [("26415", 0.6), ("9", 0.55), ("9", 0.72), ("942", 0.7)]
)
def test_within_radius_finds_every_book_exact_search_finds(
    api: TestClient, settings: Settings, book_id: str, radius: float
) -> None:
    """Exact: every book within r, and no other. With FLOAT16 vectors a book whose exact
    distance is within rounding of r may fall on either side, and only there."""
    tolerance = distance_tolerance(settings)
    surely, maybe = exact_within(book_id, radius - tolerance), exact_within(book_id, radius)
    maybe = exact_within(book_id, radius + tolerance) if tolerance > 1e-5 else maybe
    result = gql(api, RADIUS, id=book_id, r=radius, first=100, offset=0)["data"]["book"]
    found = result["withinRadius"]
    assert len(surely) <= found["totalCount"] <= len(maybe)
    nearest = sorted(surely, key=surely.__getitem__)[: len(found["matches"])]
    within = {m["book"]["id"] for m in found["matches"]}
    assert len(found["matches"]) == min(100, found["totalCount"])
    assert within <= set(maybe)
    # the nearest books are there, but for ties within rounding at the page's end
    last = max((maybe[i] for i in within), default=0)
    assert {i for i in nearest if surely[i] < last - tolerance} <= within
    distances = [m["distance"] for m in found["matches"]]
    exact = [maybe[m["book"]["id"]] for m in found["matches"]]
    assert distances == pytest.approx(exact, abs=tolerance)
    assert distances == sorted(distances)
    assert all(d <= radius for d in distances)


def test_radius_pages_join_up_to_the_whole_list(api: TestClient) -> None:
    whole = gql(api, RADIUS, id="9", r=0.72, first=100, offset=0)["data"]["book"]["withinRadius"]
    assert 25 < whole["totalCount"] <= 100
    pages = []
    for offset in range(0, whole["totalCount"], 7):
        page = gql(api, RADIUS, id="9", r=0.72, first=7, offset=offset)["data"]["book"]
        assert page["withinRadius"]["totalCount"] == whole["totalCount"]
        pages += [m["book"]["id"] for m in page["withinRadius"]["matches"]]
    assert pages == [m["book"]["id"] for m in whole["matches"]]


def test_first_zero_gives_only_the_count(api: TestClient) -> None:
    found = gql(api, RADIUS, id="9", r=0.6, first=0, offset=0)["data"]["book"]["withinRadius"]
    assert found["matches"] == []
    assert found["totalCount"] == len(exact_within("9", 0.6))


BOOKS = """query($first: Int, $after: String) {
  books(first: $first, after: $after) {
    totalCount pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    edges { cursor node { id } } } }"""


def test_books_connection_walks_the_whole_catalogue_once_in_id_order(api: TestClient) -> None:
    seen: list[str] = []
    after = None
    while True:
        page = gql(api, BOOKS, first=100, after=after)["data"]["books"]
        assert page["totalCount"] == 1486
        seen += [edge["node"]["id"] for edge in page["edges"]]
        assert page["pageInfo"]["endCursor"] == page["edges"][-1]["cursor"]
        assert page["pageInfo"]["hasPreviousPage"] is (after is not None)
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert len(seen) == 1486
    assert seen == sorted(seen, key=int)
    assert len(set(seen)) == 1486


def test_books_defaults_to_twenty_and_first_zero_is_empty(api: TestClient) -> None:
    assert len(gql(api, BOOKS)["data"]["books"]["edges"]) == 20
    empty = gql(api, BOOKS, first=0)["data"]["books"]
    assert empty["edges"] == []
    assert empty["pageInfo"]["hasNextPage"] is True
    assert empty["pageInfo"]["endCursor"] is None
