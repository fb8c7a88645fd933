"""Requests too large to answer are refused before any Redis command; slow ones time out."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest
from graphql import OperationDefinitionNode, VariableValues, build_schema, parse
from starlette.testclient import TestClient

from lookalike.schema.app import create_app
from lookalike.schema.execution.schema import sdl
from lookalike.schema.limits.cost import (
    BEST_SCORED,
    EXAMPLE,
    FILTERED_SCAN,
    PAGE_SCAN,
    RANGE_MATCHES,
    SEARCH,
    OperationCosts,
)
from lookalike.services.core.settings import Settings
from tests.conftest import API_KEY, error_codes, gql, metric
from tests.exact_search import IDS
from tests.photos import IDENTIFY, PREFLIGHT, orl, send

NESTED_620 = """{ books(first: 20) { edges { node {
  similar(k: 5) { book { similar(k: 5) { book { title } } } } } } } }"""


def page_work(api: TestClient) -> int:
    """What a page of ``books`` costs beyond the books it returns: its search, which sorts
    the whole catalogue by id (the catalogue's size as the server knows it)."""
    books: int = api.get("/readyz").json()["books"]
    return SEARCH + -(-books // PAGE_SCAN)


def filtered(api: TestClient) -> int:
    """What a KNN with a filter costs beyond one without: it goes through more of the index
    the larger the catalogue."""
    books: int = api.get("/readyz").json()["books"]
    return -(-books // FILTERED_SCAN)


def every_book(api: TestClient) -> int:
    """What a range search over the whole catalogue costs."""
    books: int = api.get("/readyz").json()["books"]
    return SEARCH + -(-books // RANGE_MATCHES)


def nested(k: int, levels: int) -> str:
    inner = "title"
    for _ in range(levels):
        inner = f"similar(k: {k}) {{ book {{ {inner} }} }}"
    return f'{{ book(id: "9") {{ {inner} }} }}'


def test_a_million_books_is_refused_with_cost_and_limit(api: TestClient) -> None:
    body = gql(api, nested(100, 3))  # 8 levels deep: within the depth limit
    assert "data" not in body  # a request error: nothing ran
    assert error_codes(body) == ["QUERY_TOO_COMPLEX"]
    extensions = body["errors"][0]["extensions"]
    # each level returns its items and runs one search per parent: 1 + 110 + 100*110 + ...
    assert extensions["cost"] == 1 + sum(100**level * (100 + SEARCH) for level in range(3))
    assert extensions["maxCost"] == 20_000
    assert body["extensions"]["cost"]["redisRoundTrips"] == 0


def test_the_cost_counts_variables_fragments_and_defaults(api: TestClient) -> None:
    query = """query($k: Int!) { book(id: "9") { ...Deep } }
      fragment Deep on Book { similar(k: $k) { book { similar { book { title } } } } }"""
    allowed = gql(api, query, k=100)  # 1 + (100 + 1) + 100 * (5 + 1) (default k): fine
    assert "errors" not in allowed
    too_big = gql(api, query.replace("similar { book", "similar(k: 100) { book"), k=300)
    assert error_codes(too_big) == ["QUERY_TOO_COMPLEX"]
    assert too_big["errors"][0]["extensions"]["cost"] == 1 + 300 + SEARCH + 300 * (100 + SEARCH)


def test_the_benchmark_query_is_well_within_the_limit(api: TestClient) -> None:
    assert "errors" not in gql(api, NESTED_620)


@pytest.mark.parametrize(("levels", "allowed"), [(3, True), (7, False)])
def test_depth_is_limited(api: TestClient, levels: int, allowed: bool) -> None:
    body = gql(api, nested(1, levels))
    if allowed:
        assert "errors" not in body
    else:
        assert error_codes(body) == ["QUERY_TOO_COMPLEX"]
        assert body["errors"][0]["extensions"]["maxDepth"] == 8


def test_aliases_are_limited(api: TestClient) -> None:
    def aliased(count: int) -> str:
        return "{ " + " ".join(f'b{i}: book(id: "9") {{ title }}' for i in range(count)) + " }"

    assert "errors" not in gql(api, aliased(30))
    body = gql(api, aliased(31))
    assert "data" not in body  # a request error: nothing ran
    assert error_codes(body) == ["QUERY_TOO_COMPLEX"]
    assert body["errors"][0]["extensions"].items() >= {"aliases": 31, "maxAliases": 30}.items()
    assert body["extensions"]["cost"]["redisRoundTrips"] == 0


def test_tokens_are_limited_before_the_document_is_parsed(api: TestClient) -> None:
    # 2,000 tokens fit in well under the 1 MB body limit: the token limit is what stops it.
    padding = " ".join(["title"] * 2000)
    body = gql(api, f'{{ book(id: "9") {{ {padding} }} }}')
    assert "data" not in body  # a request error: nothing ran
    assert error_codes(body) == ["QUERY_TOO_COMPLEX"]
    assert body["errors"][0]["extensions"]["maxTokens"] == 2000
    assert "errors" not in gql(api, f'{{ book(id: "9") {{ {" ".join(["title"] * 100)} }} }}')


def test_a_json_body_over_the_limit_is_refused_with_413(api: TestClient) -> None:
    query = '{ book(id: "9") { title } }' + " " * (1024 * 1024)
    response = api.post("/graphql", json={"query": query})
    assert response.status_code == 413
    assert error_codes(response.json()) == ["PAYLOAD_TOO_LARGE"]


@pytest.fixture(scope="module")
def hasty(settings: Settings) -> Iterator[TestClient]:
    """The session's deployment with a 0.5 s deadline: a book query takes a few ms, a photo
    in a stopped face worker forever."""
    hasty = settings.model_copy(update={"request_timeout": 0.5})
    headers = {"Authorization": f"Bearer {API_KEY}"}
    with TestClient(create_app(hasty), headers=headers) as client:
        yield client


def test_a_request_over_the_deadline_gets_504_timeout_and_the_server_goes_on(
    hasty: TestClient,
) -> None:
    # A photo that takes forever: the face worker is stopped (SIGSTOP), as if stuck in the
    # model. Photos are no longer slow by size: detection runs on a reduced copy.
    (worker,) = hasty.app.state.faces.embedder.pids()  # type: ignore[attr-defined]
    os.kill(worker, signal.SIGSTOP)
    response = send(hasty, IDENTIFY, orl("s1", 1), headers=PREFLIGHT, k=1)
    assert response.status_code == 504
    assert error_codes(response.json()) == ["TIMEOUT"]
    assert response.json()["errors"][0]["extensions"]["timeoutSeconds"] == 0.5
    assert gql(hasty, '{ book(id: "9") { title } }')["data"]["book"]["title"]
    metrics = hasty.get("/metrics").text
    assert metric(metrics, "lookalike_graphql_errors_total", code="TIMEOUT", operation="http") == 1


# --- however k arrives, the cost is what will run --------------------------------------------

# the book, then 3 levels of similar(k: 100): each returns 100 books and runs a search
LEVEL3_COST = 1 + sum(100**level * (100 + SEARCH) for level in range(3))
SIMILAR3 = (
    "similar(k: {k}) {{ book {{ similar(k: {k}) {{ book {{ "
    "similar(k: {k}) {{ distance }} }} }} }} }}"
)


@pytest.mark.parametrize(
    ("query", "variables"),
    [
        ('{ book(id: "9") { ' + SIMILAR3.format(k="100") + " } }", {}),
        ('query($k: Int!) { book(id: "9") { ' + SIMILAR3.format(k="$k") + " } }", {"k": 100}),
        ('query($k: Int = 100) { book(id: "9") { ' + SIMILAR3.format(k="$k") + " } }", {}),
        (
            'query($k: Int = 100) { book(id: "9") { ...Deep } } fragment Deep on Book { '
            + SIMILAR3.format(k="$k")
            + " }",
            {},
        ),
        (
            'query($k: Int = 100) { book(id: "9") { ... on Book { '
            + SIMILAR3.format(k="$k")
            + " } } }",
            {},
        ),
        (
            'query($k: Int = 5) { book(id: "9") { ' + SIMILAR3.format(k="$k") + " } }",
            {"k": 100},  # a sent value beats the default
        ),
        (
            'query($yes: Boolean = true) { book(id: "9") { ...@include(if: $yes) { '
            + SIMILAR3.format(k="100")
            + " } } }",
            {},
        ),
    ],
)
def test_a_costly_query_is_refused_however_its_arguments_arrive(
    api: TestClient, query: str, variables: dict[str, int]
) -> None:
    """The report that started this: k from a variable's default was costed as 5, and one
    request returned 1,010,100 books."""
    body = gql(api, query, **variables)
    assert error_codes(body) == ["QUERY_TOO_COMPLEX"], body
    assert body["errors"][0]["extensions"]["cost"] == LEVEL3_COST
    assert body["extensions"]["cost"]["redisRoundTrips"] == 0


def test_what_skip_and_include_leave_out_costs_nothing(api: TestClient) -> None:
    query = (
        'query($no: Boolean = false) { book(id: "9") { title '
        + "...@include(if: $no) { "
        + SIMILAR3.format(k="100")
        + " } } }"
    )
    assert "errors" not in gql(api, query)
    costly = SIMILAR3.format(k="100")
    skipped = costly.replace("similar(k: 100) {", "similar(k: 100) @skip(if: true) {", 1)
    assert "errors" not in gql(api, '{ book(id: "9") { title ' + skipped + " } }")


def test_one_document_is_costed_anew_for_each_value_that_changes_its_cost(
    api: TestClient,
) -> None:
    """The cost of an operation is kept for the values of its cost inputs: the same document
    sent again with a bigger k, a filter with more values, or an @include turned on is costed
    for those values, and a variable that cannot change it (the book's id) changes nothing."""
    query = """query($id: ID!, $k: Int = 5, $deep: Boolean = false, $f: BookFilter) {
      book(id: $id) { similar(k: $k) { book { title
        similar(k: 100, filter: $f) @include(if: $deep) {
          book { similar(k: 100) { distance } } } } } } }"""
    many = {"genres": ["g" * 10] * 50, "authors": ["a" * 10] * 50}
    deep_per_book = (100 + SEARCH) + 100 * (100 + SEARCH)  # the two included levels

    def cost_of(**variables: object) -> int | None:
        body = gql(api, query, **variables)
        if "errors" not in body:
            return None
        assert error_codes(body) == ["QUERY_TOO_COMPLEX"], body
        cost: int = body["errors"][0]["extensions"]["cost"]
        return cost

    for _ in range(2):  # the second round finds every cost already computed
        assert cost_of(id="9") is None
        assert cost_of(id="10", k=100) is None
        assert cost_of(id="9", deep=True) == 1 + 5 + SEARCH + 5 * deep_per_book
        assert cost_of(id="10", deep=True) == 1 + 5 + SEARCH + 5 * deep_per_book
        assert cost_of(id="9", k=3, deep=True) == 1 + 3 + SEARCH + 3 * deep_per_book
        assert cost_of(id="9", k=2, deep=True, f=many) == 1 + 2 + SEARCH + 2 * (
            deep_per_book + 100 + filtered(api)
        )


def test_a_variable_sent_as_null_is_not_taken_for_one_left_out(api: TestClient) -> None:
    """The cost kept for a document is per the values of its cost inputs; null and absent
    are different values (an argument refuses an explicit null where it takes the default
    for a missing one), so what one request sent never changes the next one's answer."""
    query = 'query($k: Int) { book(id: "1") { similar(k: $k) { distance } } }'
    fresh = gql(api, query + " # never sent before", k=None)
    assert "errors" not in gql(api, query)  # k left out: the default, 5
    after = gql(api, query, k=None)
    assert after == fresh
    assert after["errors"]


def test_the_costs_kept_are_bounded_by_the_documents_they_hold() -> None:
    costs = OperationCosts(size=50, budget=20_000)
    schema = build_schema(sdl())  # the same types, from the SDL
    root = schema.query_type
    assert root is not None
    for n in range(300):  # distinct documents of about 1 KB each
        padding = " ".join(f"a{i}: __typename" for i in range(60))
        document = parse(f'{{ book(id: "{n}") {{ title }} {padding} }}')
        operation = document.definitions[0]
        assert isinstance(operation, OperationDefinitionNode)
        variables = VariableValues(sources={}, coerced={})
        assert costs.cost(operation, root, {}, variables, 1486) > 0
        assert len(costs.kept.operations) <= 50
        assert costs.kept.operations.chars <= 20_000


def test_a_field_asked_twice_runs_and_costs_once(api: TestClient) -> None:
    twice = '{ book(id: "9") { similar(k: 100) { distance } similar(k: 100) { book { id } } } }'
    body = gql(api, twice)
    assert "errors" not in body
    assert len(body["data"]["book"]["similar"]) == 100


def test_searches_count_even_when_they_return_nothing(api: TestClient) -> None:
    """withinRadius(first: 0) returns no book but still runs a range search per parent."""
    query = """{ books(first: 100) { edges { node { similar(k: 100) { book {
      withinRadius(r: 2, first: 0) { totalCount } } } } } } }"""
    body = gql(api, query)
    assert error_codes(body) == ["QUERY_TOO_COMPLEX"]
    assert body["errors"][0]["extensions"]["cost"] == (
        100 + page_work(api) + 100 * (100 + SEARCH) + 100 * 100 * every_book(api)
    )


# --- a radius search costs the books it may match (issue 22) -------------------------------

PAGE_OF_100 = "books(first: 100) {{ edges {{ node {{ {} }} }} }}"
ALL_BOOKS = "withinRadius(r: 2, first: 0) { totalCount }"


def aliased_pages(inner: str, count: int = 17) -> str:
    return " ".join(f"p{n}: " + PAGE_OF_100.format(inner) for n in range(count))


@pytest.mark.parametrize(
    ("query", "variables"),
    [
        # the report: 17 pages of 100 books, each counting every book within r of it
        ("{ " + aliased_pages(ALL_BOOKS) + " }", {}),
        (
            "query($r: Float!, $first: Int!) { "
            + aliased_pages("withinRadius(r: $r, first: $first) { totalCount }")
            + " }",
            {"r": 2, "first": 0},
        ),
        (
            "query($r: Float! = 2, $first: Int = 0) { "
            + aliased_pages("withinRadius(r: $r, first: $first) { totalCount }")
            + " }",
            {},
        ),
        (
            "query { " + aliased_pages("...Everything") + " } "
            "fragment Everything on Book { " + ALL_BOOKS + " }",
            {},
        ),
        ("{ " + aliased_pages("... on Book { " + ALL_BOOKS + " }") + " }", {}),
        # one page, the same search under twenty names (each alias is its own field)
        (
            "{ "
            + PAGE_OF_100.format(
                " ".join(
                    f"n{n}: withinRadius(r: 1.{n:02d}, first: 0) {{ totalCount }}"
                    for n in range(17)
                )
            )
            + " }",
            {},
        ),
        # r of 1 already reaches every book of the shipped catalogue
        ("{ " + aliased_pages("withinRadius(r: 1, first: 0) { totalCount }") + " }", {}),
        # the default page of 10 matches from it
        ("{ " + aliased_pages("withinRadius(r: 2) { totalCount }", 9) + " }", {}),
        # nested under similar: 20 x 50 books counting the whole catalogue
        (
            "query($k: Int = 50) { books(first: 20) { edges { node { similar(k: $k) { book { "
            + ALL_BOOKS
            + " } } } } } }",
            {},
        ),
    ],
)
def test_a_radius_over_the_catalogue_is_refused_however_it_is_asked(
    api: TestClient, query: str, variables: dict[str, object]
) -> None:
    """17 aliased pages of ``withinRadius(r: 2, first: 0) { totalCount }`` cost 18,870 when
    only returned items counted, and kept Redis's one thread busy for seconds: each range
    search scores and counts every book it matches, and r of 2 matches every book."""
    body = gql(api, query, **variables)
    assert "data" not in body  # a request error: nothing ran
    assert error_codes(body) == ["QUERY_TOO_COMPLEX"], body
    assert body["errors"][0]["extensions"]["cost"] > 20_000
    assert body["extensions"]["cost"]["redisRoundTrips"] == 0


def test_the_radius_report_costs_every_book_it_may_match(api: TestClient) -> None:
    body = gql(api, "{ " + aliased_pages(ALL_BOOKS) + " }")
    assert body["errors"][0]["extensions"]["cost"] == 17 * (
        100 + page_work(api) + 100 * every_book(api)
    )


def test_a_narrow_radius_on_a_page_runs_and_a_wide_one_on_fewer_books(api: TestClient) -> None:
    """What is refused is the work, not the field: small radii stay cheap, and the whole
    catalogue counted from a page of 100 books is within the limit."""
    narrow = gql(api, "{ " + aliased_pages("withinRadius(r: 0.3) { totalCount }", 8) + " }")
    assert "errors" not in narrow, narrow["errors"]
    wide = gql(api, "{ " + aliased_pages(ALL_BOOKS, 1) + " }")
    assert "errors" not in wide, wide["errors"]
    books: int = api.get("/readyz").json()["books"]
    counts = [e["node"]["withinRadius"]["totalCount"] for e in wide["data"]["p0"]["edges"]]
    # every other book (with a vector: a book without a description has none), for each
    assert len(set(counts)) == 1
    assert books - 5 < counts[0] < books


def test_a_radius_costs_more_as_the_catalogue_grows_and_kept_costs_follow() -> None:
    """The cost kept for an operation is for the catalogue size it was worked out at: the
    same operation on a catalogue grown to 20,000 books costs what a search over 20,000 does."""
    costs = OperationCosts()
    schema = build_schema(sdl())
    root = schema.query_type
    assert root is not None
    operation = parse("{ " + PAGE_OF_100.format(ALL_BOOKS) + " }").definitions[0]
    assert isinstance(operation, OperationDefinitionNode)
    variables = VariableValues(sources={}, coerced={})
    small = costs.cost(operation, root, {}, variables, 1_486)
    grown = costs.cost(operation, root, {}, variables, 20_000)
    radius = 100 * (-(-20_000 // RANGE_MATCHES) - -(-1_486 // RANGE_MATCHES))
    page = -(-20_000 // PAGE_SCAN) - -(-1_486 // PAGE_SCAN)
    assert grown - small == radius + page
    assert costs.cost(operation, root, {}, variables, 1_486) == small


def test_a_fragment_bomb_is_measured_without_expanding_it(api: TestClient) -> None:
    """Twenty fragments that each spread the next twice stand for a million fields; the limits
    look at each fragment once and the executor merges the repeats."""
    fragments = [f"fragment F{n} on Book {{ ...F{n + 1} ...F{n + 1} }}" for n in range(20)] + [
        "fragment F20 on Book { title }"
    ]
    query = '{ book(id: "9") { ...F0 } } ' + " ".join(fragments)
    started = time.perf_counter()
    body = gql(api, query)
    assert time.perf_counter() - started < 2
    assert body["data"]["book"]["title"]


# --- fields: repeats, fragments and merged selections are counted before validation ---------

# graphql-core's validation compares every two fields answering under one name: a thousand
# repeats of `title` cost it a million comparisons before it gave up with "Validation
# aborted.". Each document here is refused before validation, with what was too large.


def titles(count: int) -> str:
    return " ".join(["title"] * count)


def fragments(count: int, body: str, prefix: str = "F") -> str:
    return " ".join(f"fragment {prefix}{n} on Book {{ {body} }}" for n in range(count))


def spread_chain(count: int) -> str:
    """``count`` fragments that only spread the next one, then a title."""
    chain = " ".join(f"fragment C{n} on Book {{ ...C{n + 1} }}" for n in range(count))
    return f"{chain} fragment C{count} on Book {{ title }}"


TOO_MANY_FIELDS = [
    pytest.param(
        f'{{ book(id: "9") {{ {titles(1000)} }} }}',
        {"selectionFields": 1000, "maxSelectionFields": 100},
        "the selection set of book holds 1,000 fields",
        id="a field repeated",
    ),
    pytest.param(
        f'{{ book(id: "9") {{ {titles(60)} id title }} }}'.replace("id title", titles(41)),
        {"selectionFields": 101, "maxSelectionFields": 100},
        "the selection set of book holds 101 fields",
        id="one over",
    ),
    pytest.param(
        '{ book(id: "9") { ' + " ".join(["... on Book { " + titles(20) + " }"] * 10) + " } }",
        {"selectionFields": 200, "maxSelectionFields": 100},
        "the selection set of book holds 200 fields",
        id="inline fragments",
    ),
    pytest.param(
        '{ book(id: "9") { '
        + " ".join(f"...F{n}" for n in range(5))
        + " } } "
        + fragments(5, titles(30)),
        {"selectionFields": 150, "maxSelectionFields": 100},
        "the selection set of book holds 150 fields",
        id="fragments spread together",
    ),
    pytest.param(
        'query($k: Int = 1) { book(id: "9") { similar(k: $k) { book { ...F0 } } '
        "similar(k: $k) { book { ...F1 } } } } " + fragments(2, titles(60)),
        {"selectionFields": 120, "maxSelectionFields": 100},
        "the selection set of book.similar.book holds 120 fields",
        id="fields merged under one name",
    ),
    pytest.param(
        '{ book(id: "9") { ' + " ".join(["t: title"] * 200) + " } }",
        {"aliases": 200, "maxAliases": 30},
        "the query uses 200 aliases",
        id="an alias repeated",
    ),
    pytest.param(
        "{ " + " ".join(f'b{n}: book(id: "9") {{ {titles(20)} }}' for n in range(30)) + " }",
        {"fields": 30 + 24 * 20, "maxFields": 500},  # counted until past the limit
        "the document selects more than 500 fields",
        id="aliased selections",
    ),
    pytest.param(
        "{ "
        + " ".join(f'b{n}: book(id: "9") {{ ...F0 }}' for n in range(6))
        + " } "
        + fragments(1, titles(90)),
        {"fields": 6 + 6 * 90, "maxFields": 500},
        "the document selects more than 500 fields",
        id="a fragment spread in many places",
    ),
    pytest.param(
        '{ book(id: "9") { id } } ' + fragments(1, titles(1000), prefix="Unused"),
        {"selectionFields": 1000, "maxSelectionFields": 100},
        "the selection set of a fragment no operation spreads holds 1,000 fields",
        id="a fragment never spread",
    ),
    pytest.param(
        '{ book(id: "9") { ...C0 } } ' + spread_chain(240),
        {"nesting": 243, "maxNesting": 200},
        "nest 243 levels deep",
        id="fragments spreading fragments",
    ),
]


@pytest.mark.parametrize(("query", "figures", "message"), TOO_MANY_FIELDS)
def test_too_many_fields_are_refused_before_validation(
    api: TestClient, query: str, figures: dict[str, int], message: str
) -> None:
    body = gql(api, query)
    assert "data" not in body  # a request error: nothing ran
    assert error_codes(body) == ["QUERY_TOO_COMPLEX"], body
    (error,) = body["errors"]
    assert error["extensions"].items() >= figures.items()
    assert message in error["message"]
    assert "aborted" not in error["message"]
    assert body["extensions"]["cost"]["redisRoundTrips"] == 0


@pytest.mark.parametrize(
    "query",
    [
        pytest.param(f'{{ book(id: "9") {{ {titles(100)} }} }}', id="a full selection set"),
        pytest.param(
            "{ " + " ".join(f'b{n}: book(id: "9") {{ {titles(99)} }}' for n in range(5)) + " }",
            id="500 fields",
        ),
        pytest.param(
            '{ book(id: "9") { ' + " ".join(["...F0"] * 500) + " } } " + fragments(1, titles(99)),
            id="one fragment spread 500 times",
        ),
        pytest.param(
            '{ book(id: "9") { similar(k: 1) { book { ...F0 } } similar(k: 1) { book { ...F0 } } '
            "} } " + fragments(1, titles(99)),
            id="one fragment in fields merged",
        ),
        pytest.param('{ book(id: "9") { ...C0 } } ' + spread_chain(150), id="150 fragments deep"),
    ],
)
def test_documents_at_the_field_limits_are_answered(api: TestClient, query: str) -> None:
    body = gql(api, query)
    assert "errors" not in body, body["errors"]
    assert body["data"]


def test_a_refused_document_is_measured_once(
    api: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The verdict is kept with the document's validation: a document sent again is not
    walked again, refused or not."""
    (endpoint,) = [r.endpoint for r in api.app.routes if getattr(r, "path", "") == "/graphql"]  # type: ignore[attr-defined]
    limits = endpoint.schema.limits
    walks: list[int] = []

    class Counted:
        def refusal(self, document: Any) -> Any:
            walks.append(1)
            return limits.refusal(document)

    monkeypatch.setattr(endpoint.schema, "limits", Counted())
    refused = f'{{ book(id: "9") {{ {titles(999)} }} }} # measured once'
    answered = f'{{ book(id: "9") {{ {titles(99)} }} }} # measured once'
    for _ in range(3):
        assert error_codes(gql(api, refused)) == ["QUERY_TOO_COMPLEX"]
        assert "errors" not in gql(api, answered)
    assert len(walks) == 2


# --- what the cost counts besides items ----------------------------------------------------


@pytest.mark.parametrize(
    ("query", "variables"),
    [
        ("{ books(first: null) { edges { node { BELOW } } } }", {}),
        ("query($f: Int) { books(first: $f) { edges { node { BELOW } } } }", {"f": None}),
        ("query($f: Int = null) { books(first: $f) { edges { node { BELOW } } } }", {}),
    ],
)
def test_first_null_costs_the_twenty_it_returns(
    api: TestClient, query: str, variables: dict[str, object]
) -> None:
    below = "similar(k: 100) { book { similar(k: 100) { book { id } } } }"
    body = gql(api, query.replace("BELOW", below), **variables)
    assert error_codes(body) == ["QUERY_TOO_COMPLEX"]
    assert body["errors"][0]["extensions"]["cost"] == (
        20 + page_work(api) + 20 * (100 + SEARCH) + 2000 * (100 + SEARCH)
    )


def test_every_filter_value_counts_each_time_it_is_sent(api: TestClient) -> None:
    """A hundred long names in a filter run at every one of 6,000 fields: refused."""
    query = """query($f: BookFilter) { books(first: 100) { edges { node {
      similar(k: 60) { book { similar(k: 1, filter: $f) { distance } } } } } } }"""
    facets = {"genres": ["g" * 200] * 50, "authors": ["a" * 200] * 50}
    body = gql(api, query, f=facets)
    assert error_codes(body) == ["QUERY_TOO_COMPLEX"]
    assert body["errors"][0]["extensions"]["cost"] > 6000 * 100
    assert "errors" not in gql(api, query.replace("similar(k: 60)", "similar(k: 1)"), f=None)


def test_heavy_fields_weigh_on_every_book_shown(api: TestClient) -> None:
    light = """{ book(id: "9") { similar(k: 100) { book { id title
      similar(k: 97) { distance book { id title } } } } } }"""
    heavy = light.replace("book { id title } }", "book { id title description editions } }")
    assert "errors" not in gql(api, light)
    body = gql(api, heavy)
    assert error_codes(body) == ["QUERY_TOO_COMPLEX"]


def test_introspection_of_the_whole_schema_is_dear(api: TestClient) -> None:
    schema = "__schema { types { name fields { name } } }"
    assert "errors" not in gql(api, "{ " + schema + " }")
    aliased = " ".join(f"s{n}: {schema}" for n in range(10))
    body = gql(api, "{ " + aliased + " }")
    assert error_codes(body) == ["QUERY_TOO_COMPLEX"]


def test_long_search_texts_count_the_model_time(api: TestClient) -> None:
    text = "a long description of a book " * 68  # 1,972 characters
    aliased = " ".join(
        f'q{n}: searchBooks(text: "{text} {n}", k: 1) {{ distance }}' for n in range(25)
    )
    body = gql(api, "{ " + aliased + " }")
    assert error_codes(body) == ["QUERY_TOO_COMPLEX"]
    assert body["extensions"]["cost"]["redisRoundTrips"] == 0


def test_each_photo_a_request_embeds_counts(api: TestClient) -> None:
    """Thirty aliases of one upload were thirty model runs: four are refused before any."""
    fields = " ".join(
        f"a{n}: identifyFace(image: $image, k: 1) {{ facesDetected }}" for n in range(4)
    )
    response = send(api, "mutation($image: Upload!) { " + fields + " }", orl("s1", 1))
    body = response.json()
    assert error_codes(body) == ["QUERY_TOO_COMPLEX"]
    assert body["extensions"]["cost"]["redisRoundTrips"] == 0
    three = " ".join(
        f"a{n}: identifyFace(image: $image, k: 1) {{ facesDetected }}" for n in range(3)
    )
    assert (
        "errors"
        not in send(api, "mutation($image: Upload!) { " + three + " }", orl("s1", 1)).json()
    )


# --- the candidates a field searches count, not only the items it returns ------------------

# similar(k: 50, maxPerAuthor: 1) returns 50 books but picks them from the max(50, 5k) = 250
# nearest, and when the cap leaves fewer than 50 it searches 4 x 250 = 1,000 again: two
# searches, 1,250 hits, of which 1,200 beyond the 50 returned.
CAPPED = 50 + 2 * SEARCH + (250 + 1000 - 50)
PICKED = 'liked: ["9"], k: 50, diversity: 0.5, maxPerAuthor: 1'  # AVERAGE_VECTOR: the same
PICKED_COST = CAPPED + EXAMPLE  # and the liked book's vector read


def recommends(arguments: str, count: int, spread: str = "") -> str:
    """``count`` aliased recommend fields with these arguments."""
    return " ".join(f"r{n}: recommend({arguments}) {{ distance {spread} }}" for n in range(count))


PICKED_VARIABLES = "$liked: [ID!]!, $k: Int!, $d: Float, $cap: Int"
PICKED_FROM_VARIABLES = "liked: $liked, k: $k, diversity: $d, maxPerAuthor: $cap"


@pytest.mark.parametrize(
    ("query", "variables"),
    [
        ("{ " + recommends(PICKED, 16) + " }", {}),
        (
            f"query({PICKED_VARIABLES}) {{ {recommends(PICKED_FROM_VARIABLES, 16)} }}",
            {"liked": ["9"], "k": 50, "d": 0.5, "cap": 1},
        ),
        (
            'query($liked: [ID!]! = ["9"], $k: Int! = 50, $d: Float = 0.9, $cap: Int = 1) '
            f"{{ {recommends(PICKED_FROM_VARIABLES, 16)} }}",
            {},
        ),
        (
            "query($d: Float = 0.9) { ...Picks } fragment Picks on Query { "
            + recommends('liked: ["9"], k: 50, diversity: $d, maxPerAuthor: 1', 16)
            + " }",
            {},
        ),
        (
            'query($one: ID! = "9", $cap: Int = 1) { ... on Query { '
            + recommends("liked: [$one], k: 50, diversity: 0.5, maxPerAuthor: $cap", 16)
            + " } }",
            {},
        ),
        (
            # a sent value beats a cheaper default
            f"query($liked: [ID!]!, $k: Int! = 1, $d: Float = 0, $cap: Int) "
            f"{{ {recommends(PICKED_FROM_VARIABLES, 16)} }}",
            {"liked": "9", "k": 50, "d": 0.5, "cap": 1},  # one ID coerces to a list of one
        ),
    ],
)
def test_candidates_searched_are_refused_however_the_arguments_arrive(
    api: TestClient, query: str, variables: dict[str, object]
) -> None:
    """Sixteen recommend fields return 800 books, well under the limit, but search 20,000
    candidates: refused with the same cost each way, before any Redis command."""
    assert 16 * 50 < 20_000
    body = gql(api, query, **variables)
    assert "data" not in body  # a request error: nothing ran
    assert error_codes(body) == ["QUERY_TOO_COMPLEX"], body
    assert body["errors"][0]["extensions"]["cost"] == 16 * PICKED_COST
    assert body["extensions"]["cost"]["redisRoundTrips"] == 0


def test_fifteen_picked_recommendations_are_under_the_limit_and_run(api: TestClient) -> None:
    assert 15 * PICKED_COST < 20_000 < 16 * PICKED_COST
    body = gql(api, "{ " + recommends(PICKED, 15, "book { author }") + " }")
    assert "errors" not in body, body["errors"]
    picked = body["data"]["r0"]
    assert len(picked) == 50
    assert len({m["book"]["author"].casefold() for m in picked}) == 50  # the cap held


SIMILAR_PAGE = """query($first: Int!, $k: Int! = 50, $cap: Int = 1) { books(first: $first) {
  edges { node { similar(k: $k, maxPerAuthor: $cap) { distance } } } } }"""


def test_a_capped_similar_on_every_book_of_a_page_counts_its_candidates(api: TestClient) -> None:
    """A page of 16 books with 50 neighbours each returns 816 books, and searches 20,000."""
    body = gql(api, SIMILAR_PAGE, first=16)
    assert error_codes(body) == ["QUERY_TOO_COMPLEX"], body
    assert body["errors"][0]["extensions"]["cost"] == 16 + page_work(api) + 16 * CAPPED
    assert body["extensions"]["cost"]["redisRoundTrips"] == 0
    fragment = """query($first: Int!) { books(first: $first) { edges { node { ...Capped } } } }
      fragment Capped on Book { shown: similar(k: 50, maxPerAuthor: 1) { distance } }"""
    same = gql(api, fragment, first=16)
    assert same["errors"][0]["extensions"]["cost"] == 16 + page_work(api) + 16 * CAPPED
    # without the cap the same page returns the same 816 books and searches only those
    assert "errors" not in gql(api, SIMILAR_PAGE, first=16, cap=None)
    runs = gql(api, SIMILAR_PAGE, first=15)
    assert "errors" not in runs, runs["errors"]
    assert all(len(e["node"]["similar"]) == 50 for e in runs["data"]["books"]["edges"])


def test_best_score_counts_a_list_around_every_liked_book(api: TestClient) -> None:
    """BEST_SCORE with a dislike and diversity searches 2 x 250 books around each liked
    book, and 4 x that again if the ranking cannot prove itself: 5,000 hits for 50 books."""
    field = (
        'recommend(liked: ["9", "15"], disliked: ["26415"], k: 50, strategy: BEST_SCORE, '
        "diversity: 0.5)"
    )
    # + the three examples' reads, and each of the 5,000 hits compared with the three
    each = 50 + 2 * 2 * SEARCH + (2 * (500 + 2000) - 50) + 3 * EXAMPLE
    each += -(-5000 * 3 // BEST_SCORED)

    def aliased(count: int) -> str:
        return "{ " + " ".join(f"r{n}: {field} {{ distance }}" for n in range(count)) + " }"

    body = gql(api, aliased(4))
    assert error_codes(body) == ["QUERY_TOO_COMPLEX"], body
    assert body["errors"][0]["extensions"]["cost"] == 4 * each
    assert body["extensions"]["cost"]["redisRoundTrips"] == 0
    three = gql(api, aliased(3))
    assert "errors" not in three, three["errors"]
    assert len(three["data"]["r0"]) == 50


LISTS = """query($liked: [ID!]!, $disliked: [ID!], $seen: [ID!]) { REPEATED }"""


def test_liked_disliked_and_excluded_ids_count_each(api: TestClient) -> None:
    """Fifteen picked recommendations run; the same fields excluding 500 books each, or liking
    50 and disliking 50, are refused, dearer by exactly one an excluded id and ``EXAMPLE`` a
    liked or disliked one."""
    fields = recommends(
        "liked: $liked, disliked: $disliked, exclude: $seen, k: 50, diversity: 0.5, "
        "maxPerAuthor: 1",
        15,
    )
    query = LISTS.replace("REPEATED", fields)
    assert "errors" not in gql(api, query, liked=["9"], disliked=[], seen=[])

    seen = [str(n) for n in range(100_000, 100_500)]  # ids of no book: still costed
    body = gql(api, query, liked=["9"], disliked=[], seen=seen)
    assert error_codes(body) == ["QUERY_TOO_COMPLEX"], body
    # and its two searches (the cap's second) leave 500 books out by a filter
    assert body["errors"][0]["extensions"]["cost"] == 15 * (PICKED_COST + 500 + 2 * filtered(api))
    assert body["extensions"]["cost"]["redisRoundTrips"] == 0

    liked, disliked = IDS[:50], IDS[50:100]
    body = gql(api, query, liked=liked, disliked=disliked, seen=None)
    assert error_codes(body) == ["QUERY_TOO_COMPLEX"], body
    assert body["errors"][0]["extensions"]["cost"] == 15 * (
        PICKED_COST + EXAMPLE * (49 + 50) + 2 * filtered(api)
    )
    assert body["extensions"]["cost"]["redisRoundTrips"] == 0
