"""Book.similar over GraphQL: the course's results, exactly k, never the book itself."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from lookalike.services.core.settings import Settings
from tests.conftest import both_backends, distance_tolerance, gql

pytestmark = both_backends

SIMILAR = """query($id: ID!, $k: Int!) {
  book(id: $id) { id similar(k: $k) { distance book { id title } } }
}"""

# From the course (shared/notes/offline-stack.md): ids in order, cosine distances.
COURSE = {
    "26415": (["3008", "2706", "23187", "942", "519"], [0.561, 0.577, 0.584, 0.591, 0.614]),
    "9": (["15", "3", "110", "2", "37"], [0.462, 0.468, 0.505, 0.522, 0.547]),
}


@pytest.mark.parametrize("book_id", sorted(COURSE))
def test_similar_reproduces_the_course(api: TestClient, book_id: str) -> None:
    body = gql(api, SIMILAR, id=book_id, k=5)
    matches = body["data"]["book"]["similar"]
    ids, distances = COURSE[book_id]
    assert [m["book"]["id"] for m in matches] == ids
    assert [m["distance"] for m in matches] == pytest.approx(distances, abs=0.005)


@pytest.mark.parametrize("k", [1, 5, 37, 100])
def test_similar_returns_exactly_k_others_nearest_first(api: TestClient, k: int) -> None:
    matches = gql(api, SIMILAR, id="26415", k=k)["data"]["book"]["similar"]
    ids = [m["book"]["id"] for m in matches]
    distances = [m["distance"] for m in matches]
    assert len(ids) == k
    assert len(set(ids)) == k
    assert "26415" not in ids
    assert distances == sorted(distances)
    assert all(0 <= d <= 2 for d in distances)


def test_similar_excludes_the_book_even_when_a_twin_shares_its_description(
    api: TestClient, settings: Settings
) -> None:
    # Books 316 and 911 have the same description: each is the other's neighbour at 0.
    twins = gql(api, SIMILAR, id="316", k=3)["data"]["book"]["similar"]
    assert twins[0]["book"]["id"] == "911"
    assert twins[0]["distance"] == pytest.approx(0, abs=distance_tolerance(settings))
    assert "316" not in [m["book"]["id"] for m in twins]
    assert len(twins) == 3


def test_similar_books_have_similar_books(api: TestClient) -> None:
    body = gql(
        api,
        """{ book(id: "9") { similar(k: 3) { book { id similar(k: 2) {
              book { id similar(k: 1) { book { id } } } } } } } }""",
    )
    level1 = body["data"]["book"]["similar"]
    assert [m["book"]["id"] for m in level1] == ["15", "3", "110"]
    for match in level1:
        level2 = match["book"]["similar"]
        assert len(level2) == 2
        assert match["book"]["id"] not in {m["book"]["id"] for m in level2}
        for inner in level2:
            assert len(inner["book"]["similar"]) == 1


def test_book_with_empty_description_has_no_neighbours_and_is_no_neighbour(
    api: TestClient,
) -> None:
    body = gql(
        api,
        """{ empty: book(id: "1070") { description similar(k: 5) { distance }
                 withinRadius(r: 2) { totalCount } }
             any: book(id: "9") { withinRadius(r: 2, first: 100, offset: 1400) {
                 totalCount matches { book { id } } } } }""",
    )
    empty = body["data"]["empty"]
    assert empty == {"description": "", "similar": [], "withinRadius": {"totalCount": 0}}
    everyone = body["data"]["any"]["withinRadius"]
    # 1,486 books less book 9 itself less the one with no embedding.
    assert everyone["totalCount"] == 1484
    assert "1070" not in {m["book"]["id"] for m in everyone["matches"]}


def test_book_fields_come_from_the_catalogue(api: TestClient) -> None:
    book = gql(
        api,
        """{ book(id: "0") { id title author genres editions pages yearPublished url
             rating ratingVotes inventory { stockId status } } }""",
    )["data"]["book"]
    assert book["title"] == "Engineward #2"
    assert book["author"] == "George Mann"
    assert book["genres"] == ["comics (superheroes)"]
    assert book["editions"] == ["english", "spanish", "french"]
    assert (book["pages"], book["yearPublished"]) == (1188, 2020)
    assert (book["rating"], book["ratingVotes"]) == (3.67, 3)
    assert book["inventory"][3] == {"stockId": "0_4", "status": "maintenance"}
    assert len(book["inventory"]) == 9
