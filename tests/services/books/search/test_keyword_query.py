"""Keyword search text: the reader's words become plain query terms and nothing else, checked
by the real RediSearch parser (FT.EXPLAIN) and by running every query on the real index."""

from __future__ import annotations

import re
import string
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from redisvl.query.filter import FilterExpression
from starlette.testclient import TestClient

from lookalike.services.books.filters import BookFilter, excluding
from lookalike.services.books.loading.shipped import read_shipped
from lookalike.services.books.search.keyword import (
    MAX_TERMS,
    SEPARATORS,
    STOPWORDS,
    KeywordQuery,
    keyword_query,
    keyword_search,
    search_terms,
    words,
)
from lookalike.services.core.settings import Settings
from lookalike.services.redis.searches import search_arguments
from tests.conftest import gql, sync_client

RECORDS = read_shipped().records

ATTACKS = [
    '"an exact phrase"',
    "@title:dune",
    "@genres:{horror}",
    "@id_number:[0 inf]",
    "-dune",
    "dune -sand",
    "dune|sand",
    "dune | -@title:x",
    "dun*",
    "*",
    "-*",
    "%dune%",
    "%%%dun%%%",
    "{dune}",
    "(dune",
    "dune)",
    "~dune",
    "$param",
    "dune=>{$weight: 100}",
    "=>[KNN 10 @embedding $v]",
    "w'*dune*'",
    "ismissing(@title)",
    "\\",
    "dune\\",
    "\\@title:dune",
    "'single' \"double\" `back`",
    "a_b c_d",
    "In an Absent Dream",  # a union that starts with two stopwords crashes RediSearch 2.10.5
    "the in an of",
    "été naïve ﬁre 漢字 emoji🙂",
    "x" * 2000,
]
_ONLY_PARAMETERS = re.compile(r"^\(\$w\d+(\|\$w\d+)*\)$")
_EXPANSION = re.compile(r"^\+?\S+\(expanded\)$")  # a stem RediSearch adds


Client = redis.Redis | redis.RedisCluster


def command(client: Client, *arguments: Any) -> Any:
    return client.execute_command(*arguments)  # type: ignore[no-untyped-call]


@pytest.fixture(scope="module")
def client(api: TestClient, settings: Settings) -> Client:
    """A plain client on the session's Redis (the app loaded the books index there)."""
    return sync_client(settings.redis_url or "")


def parsed_terms(client: Client, index: str, query: KeywordQuery) -> set[str]:
    """The terms of the query tree RediSearch parsed, failing on any node that is not a plain
    word (or its stemming expansion) in a union: no field, negation, prefix, fuzzy, phrase,
    tag, range or vector clause."""
    params = [item for pair in query.params.items() for item in pair]
    tree = command(
        client, "FT.EXPLAIN", index, query.text, "PARAMS", len(params), *params, "DIALECT", 2
    )
    text = tree.decode() if isinstance(tree, bytes) else str(tree)
    leaves = set()
    for line in (line.strip() for line in text.splitlines()):
        if line in {"UNION {", "}", ""} or _EXPANSION.match(line):
            continue
        assert not set(line) & SEPARATORS, text
        leaves.add(line)
    assert len(leaves) <= MAX_TERMS, text
    return leaves


def test_words_are_split_as_the_index_splits_them() -> None:
    assert words("Ender's Game") == ["ender", "s", "game"]
    assert words("Y: The Last Man - Vol. 1") == ["y", "the", "last", "man", "vol", "1"]
    assert search_terms("The Lord of the Rings, the RINGS") == ["lord", "rings"]
    assert keyword_query("The City & the City") == KeywordQuery("($w0)", {"w0": "city"})
    assert keyword_query("Ender's Game") == KeywordQuery(
        "($w0|$w1|$w2)", {"w0": "ender", "w1": "s", "w2": "game"}
    )
    assert keyword_query("the of a") is None
    assert keyword_query("?!.@-") is None
    many = " ".join(f"word{n}" for n in range(100))
    assert len(search_terms(many)) == MAX_TERMS


@pytest.mark.parametrize("text", ATTACKS)
def test_no_user_text_becomes_query_syntax(client: Client, settings: Settings, text: str) -> None:
    query = keyword_query(text)
    if query is None:
        assert not set(words(text)) - STOPWORDS
        return
    assert _ONLY_PARAMETERS.match(query.text)
    terms = parsed_terms(client, settings.index_name, query)
    assert terms <= set(search_terms(text)) or not text.isascii()
    search = keyword_search(text, [], 5, ["title"])
    assert search is not None
    reply = command(client, "FT.SEARCH", *search_arguments(settings.index_name, search))
    assert client.ping()
    assert int(reply[b"total_results"]) >= 0


@pytest.mark.parametrize(
    "text",
    ["haunted\u00a0house", "haunted\u2028house", "haunted\u200bhouse", "\ufeffhaunted house"],
)
def test_spaces_a_paste_brings_split_words(text: str) -> None:
    """A no-break space, a line separator, a zero-width space or a byte-order mark between
    two words would glue them into one word no book holds."""
    assert words(text) == ["haunted", "house"]
    assert search_terms(text) == ["haunted", "house"]


def test_the_title_with_two_stopwords_first_is_found_and_redis_survives(
    client: Client, settings: Settings
) -> None:
    search = keyword_search("In an Absent Dream", [], 3, ["title"])
    assert search is not None
    reply = command(client, "FT.SEARCH", *search_arguments(settings.index_name, search))
    titles = [hit[b"extra_attributes"][b"title"] for hit in reply[b"results"]]
    assert titles[0] == b"In an Absent Dream"
    assert client.ping()


def test_filters_and_exclusions_narrow_the_keyword_search(
    client: Client, settings: Settings
) -> None:
    """The matches are the unfiltered matches that pass (their order is RediSearch's: with a
    filter, 2.10 counts fewer of a book's words, RediSearch issue 4673)."""

    def ids(*filters: FilterExpression | None) -> set[str]:
        search = keyword_search("transformers robots war", filters, 1000, [])
        assert search is not None
        reply = command(client, "FT.SEARCH", *search_arguments(settings.index_name, search))
        prefix = settings.key_prefix + ":"
        return {hit[b"id"].decode().removeprefix(prefix) for hit in reply[b"results"]}

    everything = ids()
    assert {"9", "3"} < everything
    assert ids(excluding({"9", "3"})) == everything - {"9", "3"}
    comics = BookFilter(genres=("comics",))
    in_comics = {r["id"] for r in RECORDS if "comics" in r["genres"]}
    assert ids(comics.expression()) == everything & in_comics
    assert ids(comics.expression(), excluding({"9"})) == (everything & in_comics) - {"9"}


_TEXTS = st.lists(
    st.one_of(
        st.sampled_from(sorted(STOPWORDS)),
        st.sampled_from(list(string.punctuation)),
        st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=12),
        st.sampled_from(["dune", "robot", "war", "Ender's", "été"]),
    ),
    max_size=25,
).map(" ".join)


@hypothesis_settings(
    max_examples=150,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(text=_TEXTS)
def test_any_text_is_a_valid_query_of_plain_terms(
    client: Client, settings: Settings, text: str
) -> None:
    query = keyword_query(text)
    if query is None:
        return
    assert _ONLY_PARAMETERS.match(query.text)
    assert len(parsed_terms(client, settings.index_name, query)) <= len(search_terms(text))
    search = keyword_search(text, [], 1, ["title"])
    assert search is not None
    reply = command(client, "FT.SEARCH", *search_arguments(settings.index_name, search))
    assert int(reply[b"total_results"]) >= 0


def test_a_pasted_no_break_space_finds_what_a_space_finds(api: TestClient) -> None:
    query = """query($text: String!) {
      searchBooks(text: $text, k: 5, mode: KEYWORD) { book { id } } }"""

    def found(text: str) -> list[str]:
        body = gql(api, query, text=text)
        assert "errors" not in body, body
        return [m["book"]["id"] for m in body["data"]["searchBooks"]]

    plain = found("haunted house")
    assert plain  # the catalogue has haunted houses
    assert found("haunted\u00a0house") == plain
    assert found("haunted\u200bhouse") == plain
