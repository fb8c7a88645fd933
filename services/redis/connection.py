"""Connecting to Redis: which server (one Redis or a cluster), the module check, round trips.

REDIS_URL may name one Redis or any node of a Redis Cluster: ``INFO cluster`` tells which, and
a cluster gets redis-py's cluster client, which learns the slot map from that node and sends
each command to the shard that holds its key (a search, to a node whose query engine fans it
out to every shard).

Round trips are counted in the client, where they happen, into the request's usage
(``request_usage``): on one Redis, every command and every pipeline's execution is one request
written to the socket and waited for (a pipeline sends all its commands in one), each taking a
turn and bounded by one deadline (round_trips.py). On a cluster a pipeline is
split by shard and sent to all of them at once, so it still costs one round trip of latency:
it counts one, and so does each command sent alone (redirections and retries inside are not
counted). Redis's own ``INFO stats`` read counts grow with payload size, so they cannot tell
batching from bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aredis
from redis.asyncio import ConnectionPool, RedisCluster
from redis.asyncio.client import Pipeline
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import (
    ClusterDownError,
    OutOfMemoryError,
    RedisError,
    ResponseError,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from lookalike.services.core import metrics
from lookalike.services.core.errors import ServiceUnavailable
from lookalike.services.core.request_usage import count_round_trip, one_round_trip
from lookalike.services.core.settings import Settings
from lookalike.services.redis.embedded import EmbeddedRedis, running_url
from lookalike.services.redis.redis_compat import (
    CountingClusterPipeline,
    connection_options,
    counting_cluster_pipeline,
    round_trip_pipeline,
)
from lookalike.services.redis.round_trips import NoConnectionFree, RoundTrip, Turns

Redis = aredis.Redis | RedisCluster
log = logging.getLogger("lookalike.redis")

# Redis 8 carries these built in; Redis Stack 7.2+ loads them as modules.
REQUIRED_MODULES = {"search": ("search", 20800), "ReJSON": ("JSON", 20600)}

MAX_CONNECTIONS = 64  # LOOKALIKE_REDIS_MAX_CONNECTIONS's default


class WritesRefused(ServiceUnavailable):
    """Redis refused a write: it reached its ``maxmemory`` and evicts nothing lookalike holds."""


# Redis is not there for this command: the server cannot reach it, or (a cluster) the shard
# that holds the key is down or the cluster is reconfiguring. Answered SERVICE_UNAVAILABLE.
UNREACHABLE = (
    RedisConnectionError,
    RedisTimeoutError,
    ConnectionError,
    OSError,
    ClusterDownError,
    TryAgainError,
    SlotNotCoveredError,
)


def _retry() -> Retry:
    """One retry (after 10 ms) replaces a pooled connection that died while Redis restarted;
    more would only make a request wait longer for an answer that is SERVICE_UNAVAILABLE."""
    return Retry(ExponentialBackoff(cap=0.05, base=0.01), 1)


class CountingRedis(aredis.Redis):
    """redis-py's client for one Redis, each command and each pipeline a round trip counted,
    taken in turn and bounded by one deadline (round_trips.py)."""

    turns: Turns
    seconds: float | None = None  # the deadline of a round trip

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        count_round_trip()
        async with RoundTrip(self.turns, self.seconds):
            return await super().execute_command(*args, **options)  # type: ignore[no-untyped-call]

    def pipeline(self, transaction: bool = True, shard_hint: str | None = None) -> Pipeline:
        return round_trip_pipeline(self, transaction, shard_hint, self.turns, self.seconds)


def connect(url: str, timeout: float, max_connections: int = MAX_CONNECTIONS) -> CountingRedis:
    """A pooled async client for one Redis that speaks RESP3, fails fast and counts round
    trips; with ``max_connections`` round trips in flight, one more waits up to ``timeout``
    for its turn, and each has ``timeout`` to finish."""
    options = connection_options(url)
    pool = ConnectionPool(
        protocol=3,
        socket_timeout=None,  # the round trip's deadline instead: redis-py 8.2 sends each
        # command under asyncio.wait_for with one, a new Task a send on Python 3.11
        socket_connect_timeout=timeout,
        retry=_retry(),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
        max_connections=max_connections,
        **options,
    )
    client = CountingRedis(connection_pool=pool)
    client.turns, client.seconds = Turns(max_connections, timeout), timeout
    return client


class CountingCluster(RedisCluster):
    """redis-py's cluster client, counting a command or a whole pipeline as one round trip."""

    url = ""  # the node URL it was made from (credentials, TLS) and its timeout
    timeout = 2.0
    max_connections = MAX_CONNECTIONS
    # lookalike's own attributes, kept in the instance's __dict__ (RedisCluster has __slots__)
    _node_clients: dict[str, CountingRedis]
    _turns: Turns

    @property
    def turns(self) -> Turns:
        """Turns to send a command or a pipeline, each waited for up to ``timeout``.

        redis-py's cluster nodes have no blocking pool: past ``max_connections`` on a node
        they raise MaxConnectionsError at once. A command or a pipeline takes at most one
        connection of each node at a time (redirections and retries one after another), so
        with ``max_connections`` turns no node runs out, and a burst waits instead of failing.
        """
        turns: Turns = self.__dict__.get("_turns") or self.__dict__.setdefault(
            "_turns", Turns(self.max_connections, self.timeout)
        )
        return turns

    def node_client(self, key: str) -> CountingRedis:
        """A plain client to the primary that holds ``key``'s slot.

        For an optimistic transaction (WATCH, reads, MULTI/EXEC) on keys of one slot:
        redis-py 8.1's async cluster pipeline runs the reads between WATCH and MULTI on
        another thread's event loop and hands back an unawaited coroutine instead of the
        reply, so a transaction that reads first cannot run through it.
        """
        node = self.get_node_from_key(key)
        if node is None:
            raise SlotNotCoveredError(f"no shard holds the slot of {key!r}")
        clients: dict[str, CountingRedis] = self.__dict__.setdefault("_node_clients", {})
        if node.name not in clients:
            parts = urlsplit(self.url)
            credentials = parts.netloc.rpartition("@")[0]
            netloc = f"{credentials}@{node.host}:{node.port}" if credentials else node.name
            clients[node.name] = connect(
                urlunsplit(parts._replace(netloc=netloc)), self.timeout, self.max_connections
            )
        return clients[node.name]

    async def aclose(self) -> None:
        for client in self.__dict__.pop("_node_clients", {}).values():
            await client.aclose()
        await super().aclose()

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        async with RoundTrip(self.turns, None):  # redis-py's socket_timeout bounds each step
            with one_round_trip():
                return await super().execute_command(*args, **kwargs)

    def pipeline(
        self, transaction: Any | None = None, shard_hint: Any | None = None
    ) -> CountingClusterPipeline:
        if shard_hint:  # refused by redis-py
            return super().pipeline(transaction, shard_hint)  # type: ignore[return-value]
        return counting_cluster_pipeline(self, transaction, self.turns)


def connect_cluster(
    url: str, timeout: float, max_connections: int = MAX_CONNECTIONS
) -> CountingCluster:
    """A cluster client from any node's URL (RESP3, fail fast, round trips counted, a burst
    waiting for a turn: ``CountingCluster.turns``)."""
    cluster = CountingCluster.from_url(
        url,
        protocol=3,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=_retry(),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
        max_connections=max_connections,
    )
    assert isinstance(cluster, CountingCluster)
    cluster.url, cluster.timeout, cluster.max_connections = url, timeout, max_connections
    return cluster


def transaction_client(client: Redis, key: str) -> aredis.Redis:
    """The client to run an optimistic transaction (WATCH, reads, MULTI/EXEC) on ``key``'s
    slot with: the client itself, or on a cluster a plain client to the slot's primary."""
    if isinstance(client, CountingCluster):
        return client.node_client(key)
    if isinstance(client, RedisCluster):
        raise TypeError("a cluster client made by connect_cluster is needed")
    return client


async def open_client(
    url: str, socket_timeout: float, max_connections: int = MAX_CONNECTIONS
) -> Redis:
    """A client for what ``url`` names: one Redis, or the cluster that node belongs to."""
    single = connect(url, socket_timeout, max_connections)
    try:
        info = await single.info("cluster")
    except UNREACHABLE as exc:
        await single.aclose()
        raise ServiceUnavailable(f"cannot reach Redis at {redact(url)}: {exc}") from exc
    except RedisError:
        return single  # INFO refused (a restricted user): treat it as one Redis
    if not int(info.get("cluster_enabled", 0)):
        return single
    await single.aclose()
    cluster = connect_cluster(url, socket_timeout, max_connections)
    try:
        await cluster.initialize()
    except (RedisError, *UNREACHABLE) as exc:
        await cluster.aclose()
        raise ServiceUnavailable(
            f"Redis at {redact(url)} is a cluster node, but the cluster is not usable: {exc}"
        ) from exc
    log.info("redis is a cluster", extra={"shards": len(cluster.get_primaries())})
    return cluster


async def search_knows_every_shard(client: RedisCluster, wait: float = 15.0) -> None:
    """Wait until the query engine of every primary knows every shard.

    Each node's engine learns the cluster's shards lazily, after its first command that asks
    them all, and redis-py sends each FT.* command to a random primary: an FT.CREATE that
    reaches a node before it knows them all is created on some shards only (seen on a cluster
    just formed), and the index is then missing there for good. SEARCH.CLUSTERINFO says how
    many shards a node's engine knows; FT.INFO of no index makes it ask them.
    """
    primaries = client.get_primaries()
    deadline = time.monotonic() + wait
    for node in primaries:
        while True:
            try:
                info = await client.execute_command("SEARCH.CLUSTERINFO", target_nodes=node)
            except ResponseError:
                return  # a query engine without it (another build): nothing to wait for
            values = {_text(k): v for k, v in info.items()} if isinstance(info, dict) else {}
            known = int(values.get("num_partitions", len(primaries)))
            if known >= len(primaries):
                break
            if time.monotonic() > deadline:
                raise ServiceUnavailable(
                    f"the query engine on {node.name} knows {known} of {len(primaries)} shards "
                    f"after {wait:g} s: is the cluster still forming?"
                )
            with contextlib.suppress(ResponseError):  # a command that asks every shard
                await client.execute_command("FT.INFO", "lookalike:topology", target_nodes=node)
            await asyncio.sleep(0.1)


async def in_one_round_trip(client: Redis, commands: Sequence[Sequence[Any]]) -> list[Any]:
    """Each command's reply, all sent in one round trip: a pipeline, or the command alone
    when there is only one (redis-py's pipeline object costs more than the command it sends:
    a single book query's reads are one command each)."""
    if len(commands) == 1:
        return [await client.execute_command(*commands[0])]
    async with client.pipeline(transaction=False) as pipe:
        for command in commands:
            pipe.execute_command(*command)
        return list(await pipe.execute())


def is_cluster(client: Redis) -> bool:
    return isinstance(client, RedisCluster)


def shard_count(client: Redis) -> int:
    """The primaries the keyspace is split over (1 for one Redis), as the client last learnt
    the slot map."""
    return len(client.get_primaries()) if isinstance(client, RedisCluster) else 1


HASH_VALUE_FOR_BOOKS = 2048  # a FLOAT32 vector and most descriptions fit
FLOAT16_SEARCH = 21000  # FLOAT16 vectors: the query engine of Redis Stack 7.4 / Redis 8


async def check_modules(client: Redis, url: str, vector_type: str = "float32") -> None:
    """Fail with one sentence when the server (on a cluster, any primary) lacks the search or
    JSON module, or holds a search module too old for the configured vector type."""
    try:
        if isinstance(client, RedisCluster):
            per_node = await client.execute_command(
                "MODULE", "LIST", target_nodes=client.get_primaries()
            )
        else:
            per_node = {url: await client.execute_command("MODULE", "LIST")}  # type: ignore[no-untyped-call]
    except UNREACHABLE as exc:
        raise ServiceUnavailable(f"cannot reach Redis at {redact(url)}: {exc}") from exc
    except RedisError as exc:
        raise ServiceUnavailable(f"Redis at {redact(url)} refused MODULE LIST: {exc}") from exc
    for node, modules in per_node.items():
        _check_node_modules(_text(node), modules, vector_type)


def _check_node_modules(url: str, modules: list[Any], vector_type: str) -> None:
    found = {_text(m[b"name"]): int(m[b"ver"]) for m in modules}
    for name, (label, minimum) in REQUIRED_MODULES.items():
        if found.get(name, 0) < minimum:
            raise ServiceUnavailable(
                f"Redis at {redact(url)} lacks the {label} module (version "
                f"{minimum // 10000}.{minimum // 100 % 100} or later): use Redis 8, "
                "Redis Stack 7.2+, or unset REDIS_URL for the embedded server"
            )
    if vector_type == "float16" and found.get("search", 0) < FLOAT16_SEARCH:
        raise ServiceUnavailable(
            f"Redis at {redact(url)} has search {found.get('search')}, which cannot index "
            "FLOAT16 vectors (search 2.10 or later: Redis 8, Redis Stack 7.4): use a newer "
            "Redis, or set LOOKALIKE_VECTOR_TYPE=float32"
        )


async def warn_on_eviction_policy(client: Redis, url: str) -> None:
    """Books, faces and index definitions have no TTL and must never be evicted; the caches
    bound themselves. So ``allkeys-*`` policies are wrong for lookalike (say so at start-up),
    while ``noeviction`` and ``volatile-*`` are fine. Managed Redis may refuse CONFIG: then
    the operator's word is taken."""
    try:
        reply = await client.config_get("maxmemory-policy")
    except RedisError:
        return
    policy = _text(next(iter(reply.values()), b"")) if reply else ""
    if policy.startswith("allkeys"):
        log.warning(
            "Redis at %s evicts any key under memory pressure (maxmemory-policy %s): books and "
            "enrolled faces could disappear. Use noeviction or a volatile-* policy",
            redact(url),
            policy,
        )


async def note_hash_encoding(client: Redis, url: str) -> None:
    """Say at start-up when Redis keeps book hashes as hash tables: with a value limit under a
    book's longest field (its vector, its description), each book takes more memory than as
    a listpack (README, Data; docs/benchmarks.md, Memory per book). Managed Redis may refuse
    CONFIG: nothing to say then."""
    try:
        reply = await client.config_get("hash-max-listpack-value")
        limit = int(_text(next(iter(reply.values()), b"0"))) if reply else 0
    except (RedisError, ValueError):
        return
    if 0 < limit < HASH_VALUE_FOR_BOOKS:
        log.info(
            "Redis at %s keeps hashes with values over %d bytes as hash tables: books take "
            "about 600 bytes each more than with hash-max-listpack-value %d",
            redact(url),
            limit,
            HASH_VALUE_FOR_BOOKS,
        )


@contextlib.asynccontextmanager
async def redis_errors(writing: str = "other") -> AsyncIterator[None]:
    """Turn 'Redis is not there' into the one error the API and CLI report for it, and a
    write Redis refused for want of memory into WritesRefused (counted under ``writing``,
    what was being written)."""
    try:
        yield
    except NoConnectionFree as exc:
        raise ServiceUnavailable(str(exc)) from exc
    except UNREACHABLE as exc:
        raise ServiceUnavailable(f"Redis is unreachable: {exc}") from exc
    except OutOfMemoryError as exc:
        raise refused_write(writing) from exc


def refused_write(writing: str) -> WritesRefused:
    """A write Redis refused at its ``maxmemory``: counted in /metrics and logged in one line
    (no traceback: the cause is Redis's memory, not this code), and the error to raise."""
    metrics.REFUSED_WRITES.labels(writing).inc()
    log.warning("redis refused a write: maxmemory reached", extra={"writing": writing})
    return WritesRefused(
        "Redis refuses writes: it has reached its memory limit (maxmemory); try again later"
    )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def redact(url: str) -> str:
    """A URL safe to log: the password is replaced."""
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://***@{rest.rpartition('@')[2]}"


@contextlib.asynccontextmanager
async def open_redis(settings: Settings) -> AsyncIterator[tuple[Redis, str]]:
    """The Redis lookalike should talk to, started here if it is the embedded one.

    REDIS_URL wins; otherwise an embedded server already run by another lookalike process on
    the same data directory is shared; otherwise one is started for the life of this block,
    and started again (from its AOF) if it dies: nobody else would.
    """
    embedded: EmbeddedRedis | None = None
    url = settings.redis_url or running_url(settings.data_dir)
    if url is None:
        embedded = EmbeddedRedis(settings.data_dir)
        url = embedded.start()
    try:
        client = await open_client(url, settings.redis_timeout, settings.redis_max_connections)
    except BaseException:
        if embedded is not None:
            embedded.stop()
        raise
    supervisor = asyncio.create_task(_supervise(embedded)) if embedded is not None else None
    try:
        await check_modules(client, url, settings.vector_type)
        if isinstance(client, RedisCluster):
            await search_knows_every_shard(client)
        await warn_on_eviction_policy(client, url)
        await note_hash_encoding(client, url)
        yield client, url
    finally:
        if supervisor is not None:
            supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await supervisor
        await client.aclose()
        if embedded is not None:
            embedded.stop()


async def _supervise(server: EmbeddedRedis, interval: float = 0.5) -> None:
    """Restart the embedded Redis when it exits under us (killed, out of memory)."""
    while True:
        await asyncio.sleep(interval)
        if server.exited():
            log.warning("embedded redis exited; starting it again from its AOF")
            try:
                await asyncio.to_thread(server.start)
            except ServiceUnavailable as exc:
                log.error("embedded redis did not start again: %s", exc.message)
            else:
                log.info("embedded redis is back")
