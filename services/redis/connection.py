"""Connecting to Redis: which server (one Redis or a cluster), the module check, round trips.

REDIS_URL may name one Redis or any node of a Redis Cluster: ``INFO cluster`` tells which, and
a cluster gets redis-py's cluster client, which learns the slot map from that node and sends
each command to the shard that holds its key (a search, to a node whose query engine fans it
out to every shard).

Round trips are counted in the client, where they happen, into the request's usage
(``request_usage``): on one Redis, every ``send_packed_command`` is one request written to the
socket and waited for (a pipeline sends all its commands in one). On a cluster a pipeline is
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
from collections.abc import AsyncIterator, Awaitable, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import hiredis
import redis.asyncio as aredis
from redis.asyncio.cluster import ClusterPipeline, RedisCluster
from redis.asyncio.connection import Connection, ConnectionPool, parse_url
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import (
    ClusterDownError,
    DataError,
    RedisError,
    ResponseError,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from lookalike.services.core.errors import ServiceUnavailable
from lookalike.services.core.request_usage import count_round_trip, one_round_trip
from lookalike.services.core.settings import Settings
from lookalike.services.redis.embedded import EmbeddedRedis, running_url

Redis = aredis.Redis | RedisCluster
log = logging.getLogger("lookalike.redis")

# Redis 8 carries these built in; Redis Stack 7.2+ loads them as modules.
REQUIRED_MODULES = {"search": ("search", 20800), "ReJSON": ("JSON", 20600)}

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


class _CountingConnection:
    """A connection that counts its round trips and keeps a deadline on each send and read.

    The deadline is ``deadline``, not redis-py's ``socket_timeout`` (which stays None): with a
    socket timeout, redis-py 8.1 sends every command under ``asyncio.wait_for``, which on
    Python 3.11 wraps the send in a new Task and finishes it a turn of the event loop later.
    ``asyncio.timeout`` bounds the same wait in the calling task; a single book query ran
    about a sixth faster (README, Benchmarks). A send smaller than ``SMALL_SEND`` needs no
    deadline: ``StreamWriter.drain`` waits only once the transport holds more than its
    high-water mark (64 KiB in asyncio and uvloop), and the previous send on the connection
    drained before this one; if Redis stops reading, the read after it times out. The errors
    stay redis-py's: a send or a read that outlives the deadline closes the connection and
    raises its TimeoutError.
    """

    deadline: float | None = None

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        count_round_trip()
        send = super().send_packed_command(command, check_health)  # type: ignore[misc]
        if self.deadline is None or _small(command):
            await send
        else:
            await self._within_deadline(send, "writing to socket")

    async def read_response(
        self,
        disable_decoding: bool = False,
        timeout: float | None = None,  # noqa: ASYNC109 (redis-py's signature)
        *,
        disconnect_on_error: bool = True,
        push_request: bool | None = False,
    ) -> Any:
        read = super().read_response(  # type: ignore[misc]
            disable_decoding,
            timeout,
            disconnect_on_error=disconnect_on_error,
            push_request=push_request,
        )
        if timeout is not None or self.deadline is None:  # the caller's own timeout
            return await read
        return await self._within_deadline(read, "reading from Redis")

    async def _within_deadline(self, work: Awaitable[Any], doing: str) -> Any:
        """``work`` (a send or a read), or redis-py's TimeoutError past the deadline; redis-py
        closes the connection when the cancelled work was under way."""
        try:
            async with asyncio.timeout(self.deadline):
                return await work
        except TimeoutError:
            raise RedisTimeoutError(f"Timeout {doing}") from None

    def pack_command(self, *args: Any) -> list[bytes]:
        """Packed in C by hiredis, as redis-py's own synchronous client does: its asyncio
        client packs in Python, and one nested level sends a hundred FT.SEARCH commands."""
        if isinstance(args[0], str) and " " in args[0]:  # "CONFIG GET": two words on the wire
            args = (*args[0].split(), *args[1:])
        if not _CONVERTED.isdisjoint(map(type, args)):  # one pass in C: most commands
            args = tuple(_packable(a) for a in args)
        return [hiredis.pack_command(args)]


_CONVERTED = frozenset({memoryview, bool})  # the argument types _packable changes
SMALL_SEND = 16 * 1024  # a quarter of the transports' 64 KiB high-water mark


def _small(command: Any) -> bool:
    if isinstance(command, (bytes, str)):
        return len(command) < SMALL_SEND
    if isinstance(command, (list, tuple)):  # packed parts (another iterable: not counted)
        return sum(map(len, command)) < SMALL_SEND
    return False


def _packable(value: Any) -> Any:
    if isinstance(value, memoryview):
        return value.tobytes()
    if isinstance(value, bool):  # redis-py refuses booleans too; never send True as 1
        raise DataError("a boolean cannot be sent to Redis; convert it first")
    return value


def _counting(cls: type[Any], deadline: float) -> type[Any]:
    return type(f"Counting{cls.__name__}", (_CountingConnection, cls), {"deadline": deadline})


def _retry() -> Retry:
    """One retry (after 10 ms) replaces a pooled connection that died while Redis restarted;
    more would only make a request wait longer for an answer that is SERVICE_UNAVAILABLE."""
    return Retry(ExponentialBackoff(cap=0.05, base=0.01), 1)


def connect(url: str, timeout: float) -> aredis.Redis:
    """A pooled async client for one Redis that speaks RESP3, fails fast and counts round trips."""
    options: dict[str, Any] = dict(parse_url(url))
    options["connection_class"] = _counting(options.get("connection_class", Connection), timeout)
    pool = ConnectionPool(
        protocol=3,
        socket_timeout=None,  # the connection's deadline instead (_CountingConnection)
        socket_connect_timeout=timeout,
        retry=_retry(),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
        max_connections=64,
        **options,
    )
    return aredis.Redis(connection_pool=pool)


class _CountingClusterPipeline(ClusterPipeline):
    async def execute(
        self, raise_on_error: bool = True, allow_redirections: bool = True
    ) -> list[Any]:
        with one_round_trip():  # the shards' parts go out together: one wait
            return await super().execute(raise_on_error, allow_redirections)


class CountingCluster(RedisCluster):
    """redis-py's cluster client, counting a command or a whole pipeline as one round trip."""

    url = ""  # the node URL it was made from (credentials, TLS) and its timeout
    timeout = 2.0
    _node_clients: dict[str, aredis.Redis]

    def node_client(self, key: str) -> aredis.Redis:
        """A plain client to the primary that holds ``key``'s slot.

        For an optimistic transaction (WATCH, reads, MULTI/EXEC) on keys of one slot:
        redis-py 8.1's async cluster pipeline runs the reads between WATCH and MULTI on
        another thread's event loop and hands back an unawaited coroutine instead of the
        reply, so a transaction that reads first cannot run through it.
        """
        node = self.get_node_from_key(key)
        if node is None:
            raise SlotNotCoveredError(f"no shard holds the slot of {key!r}")
        clients: dict[str, aredis.Redis] = self.__dict__.setdefault("_node_clients", {})
        if node.name not in clients:
            parts = urlsplit(self.url)
            credentials = parts.netloc.rpartition("@")[0]
            netloc = f"{credentials}@{node.host}:{node.port}" if credentials else node.name
            clients[node.name] = connect(urlunsplit(parts._replace(netloc=netloc)), self.timeout)
        return clients[node.name]

    async def aclose(self) -> None:
        for client in self.__dict__.pop("_node_clients", {}).values():
            await client.aclose()
        await super().aclose()

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        with one_round_trip():
            return await super().execute_command(*args, **kwargs)

    def pipeline(
        self, transaction: Any | None = None, shard_hint: Any | None = None
    ) -> ClusterPipeline:
        if shard_hint:
            return super().pipeline(transaction, shard_hint)  # refused by redis-py
        return _CountingClusterPipeline(self, transaction)  # type: ignore[abstract]


def connect_cluster(url: str, timeout: float) -> CountingCluster:
    """A cluster client from any node's URL (RESP3, fail fast, round trips counted)."""
    cluster = CountingCluster.from_url(
        url,
        protocol=3,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=_retry(),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
        max_connections=64,
    )
    assert isinstance(cluster, CountingCluster)
    cluster.url, cluster.timeout = url, timeout
    return cluster


def transaction_client(client: Redis, key: str) -> aredis.Redis:
    """The client to run an optimistic transaction (WATCH, reads, MULTI/EXEC) on ``key``'s
    slot with: the client itself, or on a cluster a plain client to the slot's primary."""
    if isinstance(client, CountingCluster):
        return client.node_client(key)
    if isinstance(client, RedisCluster):
        raise TypeError("a cluster client made by connect_cluster is needed")
    return client


async def open_client(url: str, socket_timeout: float) -> Redis:
    """A client for what ``url`` names: one Redis, or the cluster that node belongs to."""
    single = connect(url, socket_timeout)
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
    cluster = connect_cluster(url, socket_timeout)
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
    book's longest field (its vector, its description), each book takes about 600 bytes more
    than as a listpack (README, Data). Managed Redis may refuse CONFIG: nothing to say then."""
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
async def redis_errors() -> AsyncIterator[None]:
    """Turn 'Redis is not there' into the one error the API and CLI report for it."""
    try:
        yield
    except UNREACHABLE as exc:
        raise ServiceUnavailable(f"Redis is unreachable: {exc}") from exc


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
        client = await open_client(url, settings.redis_timeout)
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
