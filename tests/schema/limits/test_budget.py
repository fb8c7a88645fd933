"""A budget of query cost per client and minute, against real ``lookalike serve`` processes
sharing one real Redis: what one server charges, the other refuses (429, Retry-After,
RATE_LIMITED, nothing run); a full key's own budget, or none; what is left in every answer;
and every way of writing one query is charged what the cost limit computes.

Clients are told apart by the address uvicorn takes from X-Forwarded-For (trusted from
127.0.0.1, as behind a reverse proxy on the same host); each test uses addresses of its own.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import redis
from graphql import OperationDefinitionNode, VariableValues, build_schema, parse

from lookalike.schema.execution.schema import sdl
from lookalike.schema.limits.cost import operation_cost
from lookalike.services.core.settings import Settings
from tests.conftest import metric
from tests.servers import Served, serving

PER_MINUTE = 1000
FULL_KEY_PER_MINUTE = 5000  # on server A; server B gives full keys no budget
FULL_ONE, FULL_TWO = "full-key-one-0123456789", "full-key-two-0123456789"
SIMILAR_100 = '{ book(id: "9") { similar(k: 100) { book { id } } } }'
# ten of them: more than an address's whole minute, less than a full key's
TEN_SIMILAR_100 = (
    "{ "
    + " ".join(f'b{n}: book(id: "9") {{ similar(k: 100) {{ distance }} }}' for n in range(10))
    + " }"
)
_addresses = (f"198.51.100.{n}" for n in itertools.count(1))


def address() -> str:
    """An address no other test's client has used."""
    return next(_addresses)


@dataclass(frozen=True)
class Servers:
    a: Served
    b: Served


@pytest.fixture(scope="module")
def servers(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    folder = tmp_path_factory.mktemp("budget")
    name = f"budget{uuid.uuid4().hex[:8]}"
    common = {
        "REDIS_URL": settings.redis_url or "",
        "LOOKALIKE_INDEX_NAME": name,
        "LOOKALIKE_KEY_PREFIX": name,
        "LOOKALIKE_REDIS_TIMEOUT": "10",
        "LOOKALIKE_API_KEYS": f"{FULL_ONE},{FULL_TWO}",
        "LOOKALIKE_COST_PER_MINUTE": str(PER_MINUTE),
    }
    with (
        serving(
            folder / "a.log",
            **common,
            LOOKALIKE_DATA_DIR=str(folder / "a"),
            LOOKALIKE_FULL_KEY_COST_PER_MINUTE=str(FULL_KEY_PER_MINUTE),
        ) as a,
        serving(
            folder / "b.log",
            **common,
            LOOKALIKE_DATA_DIR=str(folder / "b"),
            LOOKALIKE_FULL_KEY_COST_PER_MINUTE="0",
        ) as b,
    ):
        yield Servers(a, b)
    client = redis.Redis.from_url(settings.redis_url or "")
    client.ft(name).dropindex(delete_documents=True)
    client.close()


@dataclass(frozen=True)
class Answer:
    status: int
    headers: httpx.Headers
    body: dict[str, Any]

    @property
    def codes(self) -> list[str]:
        return [e["extensions"]["code"] for e in self.body.get("errors", [])]

    @property
    def cost(self) -> dict[str, int]:
        cost: dict[str, int] = self.body["extensions"]["cost"]
        return cost


def ask(
    server: Served,
    query: str,
    client: str,
    key: str | None = None,
    **variables: Any,
) -> Answer:
    headers = {"x-forwarded-for": client}
    if key is not None:
        headers["authorization"] = f"Bearer {key}"
    response = httpx.post(
        f"{server.base}/graphql",
        json={"query": query, "variables": variables},
        headers=headers,
        timeout=30,
    )
    return Answer(response.status_code, response.headers, response.json())


def spend(server: Served, query: str, client: str, key: str | None = None) -> list[Answer]:
    """The query asked until the budget refuses it (at most 50 times)."""
    answers = [ask(server, query, client, key)]
    while answers[-1].status == 200 and len(answers) < 50:
        answers.append(ask(server, query, client, key))
    return answers


def refused(answer: Answer) -> None:
    """429 with Retry-After and RATE_LIMITED, and nothing ran: no data, no Redis round trip
    but the budget's own, nothing charged."""
    assert answer.status == 429, answer.body
    assert 1 <= int(answer.headers["retry-after"]) <= 120
    assert answer.codes == ["RATE_LIMITED"]
    assert answer.body["errors"][0]["extensions"]["retryAfter"] == int(
        answer.headers["retry-after"]
    )
    assert answer.body.get("data") is None
    assert answer.cost["redisRoundTrips"] == 1
    assert answer.cost["charged"] == 0


def test_what_one_server_charges_the_other_refuses(servers: Servers) -> None:
    client = address()
    first = ask(servers.a, SIMILAR_100, client)
    assert first.status == 200, first.body
    cost = first.cost["charged"]
    assert cost > 100  # a hundred books returned, and the search
    fits = PER_MINUTE // cost
    for _ in range(fits - 1):
        assert ask(servers.a, SIMILAR_100, client).status == 200
    left = PER_MINUTE - fits * cost
    limited = {"operation": "anonymous", "code": "RATE_LIMITED"}
    counted = httpx.get(f"{servers.b.base}/metrics").text
    before = metric(counted, "lookalike_graphql_errors_total", **limited)
    on_b = ask(servers.b, SIMILAR_100, client)
    refused(on_b)
    assert on_b.cost["remaining"] == left
    counted = httpx.get(f"{servers.b.base}/metrics").text  # what an operator alerts on
    assert metric(counted, "lookalike_graphql_errors_total", **limited) == before + 1
    # a cheaper query still fits what is left: the refused one took nothing
    cheap = ask(servers.b, '{ book(id: "9") { title } }', client)
    assert cheap.status == 200, cheap.body
    assert cheap.cost["remaining"] == left - cheap.cost["charged"]


def test_a_client_over_its_budget_blocks_no_other(servers: Servers) -> None:
    over = address()
    refused(spend(servers.a, SIMILAR_100, over)[-1])
    other = ask(servers.b, SIMILAR_100, address())
    assert other.status == 200, other.body
    assert other.cost["remaining"] == PER_MINUTE - other.cost["charged"]
    # a key that is not configured is no key: it buys no fresh budget
    refused(ask(servers.b, SIMILAR_100, over, f"made-up-{uuid.uuid4().hex}"))
    # a full key from the over-spent address spends its own budget
    keyed = ask(servers.a, SIMILAR_100, over, FULL_ONE)
    assert keyed.status == 200, keyed.body
    assert keyed.cost["perMinute"] == FULL_KEY_PER_MINUTE


def test_full_keys_have_a_larger_budget_each(servers: Servers) -> None:
    client = address()
    answers = spend(servers.a, TEN_SIMILAR_100, client, FULL_TWO)
    refused(answers[-1])
    accepted = answers[:-1]
    assert sum(a.cost["charged"] for a in accepted) > PER_MINUTE
    assert accepted[-1].cost["remaining"] < accepted[-1].cost["charged"]
    # the other full key, from the same address, is not touched by it
    assert ask(servers.a, TEN_SIMILAR_100, client, FULL_ONE).status == 200


def test_full_keys_have_no_budget_where_it_is_zero(servers: Servers) -> None:
    client = address()
    for _ in range(FULL_KEY_PER_MINUTE // 1000 + 1):  # past what server A would allow
        answer = ask(servers.b, TEN_SIMILAR_100, client, FULL_ONE)
        assert answer.status == 200, answer.body
        assert "remaining" not in answer.cost
    # without the key, the address's budget holds
    too_dear = ask(servers.b, TEN_SIMILAR_100, client)
    assert too_dear.codes == ["QUERY_TOO_COMPLEX"]


def test_a_query_dearer_than_a_whole_minute_is_too_complex_not_rate_limited(
    servers: Servers,
) -> None:
    """It could never run however long the client waited: the cost limit's answer, with the
    budget as its limit, before any Redis command."""
    answer = ask(servers.a, TEN_SIMILAR_100, address())
    assert answer.status == 200
    assert answer.codes == ["QUERY_TOO_COMPLEX"]
    extensions = answer.body["errors"][0]["extensions"]
    assert extensions["maxCost"] == PER_MINUTE
    assert extensions["cost"] > PER_MINUTE
    assert answer.cost["charged"] == 0
    assert answer.cost["remaining"] == PER_MINUTE


def test_every_answer_says_what_is_left(servers: Servers) -> None:
    client = address()
    remaining = PER_MINUTE
    for server, query in [
        (servers.a, '{ book(id: "9") { title similar(k: 3) { distance } } }'),
        (servers.b, "{ __typename }"),
        (servers.a, "{ nope }"),  # refused by validation: charged nothing
        (servers.b, "{ broken"),  # does not parse: charged nothing
        (servers.b, SIMILAR_100),
    ]:
        answer = ask(server, query, client)
        assert answer.cost["perMinute"] == PER_MINUTE
        remaining -= answer.cost["charged"]
        assert answer.cost["remaining"] == remaining, (query, answer.body)
    assert remaining < PER_MINUTE - 100


# One query written every way a client can write it: each must be charged the same.
INNER = "title similar(k: 2) { distance }"
WAYS: dict[str, tuple[str, dict[str, Any]]] = {
    "literals": (f'{{ book(id: "9") {{ similar(k: 7) {{ book {{ {INNER} }} }} }} }}', {}),
    "variables": (
        "query($id: ID!, $k: Int!, $j: Int) { book(id: $id) { similar(k: $k) { book {"
        " title similar(k: $j) { distance } } } } }",
        {"id": "9", "k": 7, "j": 2},
    ),
    "defaults": (
        'query($k: Int = 7, $j: Int = 2) { book(id: "9") { similar(k: $k) { book {'
        " title similar(k: $j) { distance } } } } }",
        {},
    ),
    "fragments": (
        '{ book(id: "9") { ...Near } } fragment Near on Book { similar(k: 7) { book {'
        f" ...Inner }} }} }} fragment Inner on Book {{ {INNER} }}",
        {},
    ),
    # (a match's ``book`` is not aliased: ``hit: book { t: title }`` fails today, a bug of
    # the book selections reported apart)
    "aliases": (
        '{ b: book(id: "9") { s: similar(k: 7) { book { t: title'
        " near: similar(k: 2) { d: distance } } } } }",
        {},
    ),
    "inline fragments": (
        '{ book(id: "9") { ... on Book { similar(k: 7) { book {'
        f" ... {{ {INNER} }} }} }} }} }} }}",
        {},
    ),
}


def test_every_way_of_writing_a_query_is_charged_what_the_cost_limit_computes(
    servers: Servers,
) -> None:
    schema = build_schema(sdl())
    assert schema.query_type is not None
    literal = parse(WAYS["literals"][0]).definitions[0]
    assert isinstance(literal, OperationDefinitionNode)
    books = httpx.get(f"{servers.a.base}/readyz").json()["books"]
    computed = operation_cost(
        literal, schema.query_type, {}, VariableValues(sources={}, coerced={}), books
    )
    assert computed > 7 * 2  # the nested searches count
    charged = {}
    for way, (query, variables) in WAYS.items():
        answer = ask(servers.a, query, address(), **variables)
        assert answer.status == 200, (way, answer.body)
        assert "errors" not in answer.body, (way, answer.body)
        charged[way] = answer.cost["charged"]
    assert charged == dict.fromkeys(WAYS, computed)


def test_the_budget_is_one_redis_round_trip_a_request(servers: Servers) -> None:
    """The same query with and without a budget (a full key on B has none): one round trip
    more, whatever the query (charging and reading what is left in one pipeline)."""
    for query in ['{ book(id: "9") { title } }', SIMILAR_100, "{ __typename }"]:
        budgeted = ask(servers.a, query, address())
        free = ask(servers.b, query, address(), FULL_ONE)
        assert "charged" not in free.cost
        assert budgeted.cost["redisRoundTrips"] == free.cost["redisRoundTrips"] + 1, query
