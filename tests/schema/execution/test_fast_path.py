"""The benchmark's queries run on the fast path, and a fall back to graphql-core shows.

Plans (schema/execution/plans.py) and direct resolver calls
(schema/execution/resolver_calls.py) use parts of graphql-core and Strawberry that are not
public (graphql_compat.py, strawberry_compat.py); when they break, graphql-core's own
execution answers instead, with the same data.
Comparing answers cannot tell the two apart, so these tests read the two counters the executor
keeps in /metrics: operations in which plans completed values
(``lookalike_graphql_planned_operations``) and operations that fell back, by reason
(``lookalike_graphql_fallbacks``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from bench.books import NESTED, SINGLE
from bench.search import MODES, SEARCH, SIMILAR
from lookalike.schema.app import create_app
from lookalike.schema.execution.resolver_calls import DirectResolver
from lookalike.schema.execution.schema import build_schema
from lookalike.schema.execution.strawberry_compat import graphql_schema
from lookalike.services.core.settings import Settings
from tests.conftest import API_KEY, error_codes, gql, metric

PLANNED = "lookalike_graphql_planned_operations_total"
FALLBACKS = "lookalike_graphql_fallbacks_total"

# tests/services/books/search/test_recommend.py's query, as a frontend asks it
RECOMMEND = """query($liked: [ID!]!, $disliked: [ID!], $k: Int!, $strategy: RecommendStrategy!) {
  recommend(liked: $liked, disliked: $disliked, k: $k, strategy: $strategy) {
    distance book { id title author } } }"""

# bench/books.py (nested, single), bench/search.py (each search mode, similar with a filter),
# and a recommendation of each strategy
BENCHMARK: list[tuple[str, dict[str, Any]]] = [
    (NESTED, {"first": 20}),
    (SINGLE, {"id": "9"}),
    *((SEARCH, {"text": "a detective in a port city", "mode": mode}) for mode in MODES),
    (SIMILAR, {"id": "9", "filter": None}),
    (SIMILAR, {"id": "9", "filter": {"minRating": 3.5}}),
    *(
        (RECOMMEND, {"liked": ["9", "316"], "disliked": ["12"], "k": 10, "strategy": strategy})
        for strategy in ("AVERAGE_VECTOR", "BEST_SCORE")
    ),
]


def fallbacks(text: str) -> dict[str, float]:
    """Fallbacks counted so far, by reason."""
    return {
        found.labels["reason"]: found.value
        for family in text_string_to_metric_families(text)
        for found in family.samples
        if found.name == FALLBACKS
    }


def run_benchmark(client: TestClient) -> tuple[list[dict[str, Any]], float, dict[str, float]]:
    """The benchmark's answers, the operations planned and the fallbacks counted meanwhile."""
    before = client.get("/metrics").text
    answers = []
    for query, variables in BENCHMARK:
        body = gql(client, query, **variables)
        assert "errors" not in body, body
        assert all(body["data"].values()), body  # every benchmark query finds something
        answers.append(body)
    after = client.get("/metrics").text
    planned = metric(after, PLANNED) - metric(before, PLANNED)
    old = fallbacks(before)
    new = {reason: n - old.get(reason, 0) for reason, n in fallbacks(after).items()}
    return answers, planned, {reason: n for reason, n in new.items() if n}


@pytest.fixture(scope="module")
def library_path(settings: Settings) -> Iterator[TestClient]:
    """The session's deployment with LOOKALIKE_FAST_PATH=false."""
    plain = settings.model_copy(update={"fast_path": False})
    with TestClient(create_app(plain), headers={"Authorization": f"Bearer {API_KEY}"}) as client:
        yield client


def test_the_benchmark_queries_run_on_plans_and_never_fall_back(api: TestClient) -> None:
    _, planned, fell_back = run_benchmark(api)
    assert fell_back == {}
    assert planned == len(BENCHMARK)  # each operation's answer was completed by plans


def test_with_the_fast_path_off_nothing_is_planned_and_the_answers_are_the_same(
    api: TestClient, library_path: TestClient
) -> None:
    fast, planned, _ = run_benchmark(api)
    assert planned == len(BENCHMARK)
    library, planned, fell_back = run_benchmark(library_path)
    assert planned == 0
    assert fell_back == {}  # switched off is not falling back
    # the data (extensions.cost counts Redis round trips, which caches change between runs)
    assert [answer["data"] for answer in library] == [answer["data"] for answer in fast]


def test_the_query_roots_resolvers_are_called_directly_unless_the_fast_path_is_off(
    settings: Settings,
) -> None:
    def direct(settings: Settings) -> dict[str, bool]:
        root = graphql_schema(build_schema(settings)).query_type
        assert root is not None
        fields = ("book", "books", "searchBooks", "recommend")
        return {name: isinstance(getattr(root.fields[name].resolve, "__self__", None),
                                 DirectResolver) for name in fields}  # fmt: skip

    assert all(direct(settings).values()), direct(settings)
    assert not any(direct(settings.model_copy(update={"fast_path": False})).values())


def test_a_resolver_error_below_the_root_counts_as_a_resolver_fallback(api: TestClient) -> None:
    # the nested level asks for too many books: its resolver refuses, graphql-core's own
    # completion reports the error with its path
    query = '{ book(id: "9") { similar(k: 2) { book { title similar(k: 5000) { distance } } } } }'
    before = fallbacks(api.get("/metrics").text)
    body = gql(api, query)
    assert error_codes(body) == ["BAD_USER_INPUT"], body
    assert body["errors"][0]["path"][:4] == ["book", "similar", 0, "book"], body
    after = fallbacks(api.get("/metrics").text)
    assert after.get("resolver", 0) - before.get("resolver", 0) == 1  # one operation
