"""Connecting to Redis: which server, the module check, and counting round trips.

Round trips are counted in the client, where they happen: every ``send_packed_command`` is one
request written to the socket and waited for (a pipeline sends all its commands in one), and
goes to the request's usage (``request_usage``). Redis's own ``INFO stats`` read counts grow
with payload size, so they cannot tell batching from bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import redis.asyncio as aredis
from redis.asyncio.connection import Connection, ConnectionPool, parse_url
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from lookalike.services.embedded_redis import EmbeddedRedis, running_url
from lookalike.services.errors import ServiceUnavailable
from lookalike.services.request_usage import count_round_trip
from lookalike.services.settings import Settings

Redis = aredis.Redis
log = logging.getLogger("lookalike.redis")

# Redis 8 carries these built in; Redis Stack 7.2+ loads them as modules.
REQUIRED_MODULES = {"search": ("search", 20800), "ReJSON": ("JSON", 20600)}

UNREACHABLE = (RedisConnectionError, RedisTimeoutError, ConnectionError, OSError)


class _CountingConnection:
    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        count_round_trip()
        await super().send_packed_command(command, check_health)  # type: ignore[misc]


def _counting(cls: type[Any]) -> type[Any]:
    return type(f"Counting{cls.__name__}", (_CountingConnection, cls), {})


def connect(url: str, timeout: float) -> Redis:
    """A pooled async client that speaks RESP3, fails fast and counts round trips.

    One retry (after 10 ms) replaces a pooled connection that died while Redis restarted;
    more would only make a request wait longer for an answer that is SERVICE_UNAVAILABLE.
    """
    options: dict[str, Any] = dict(parse_url(url))
    options["connection_class"] = _counting(options.get("connection_class", Connection))
    pool = ConnectionPool(
        protocol=3,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(ExponentialBackoff(cap=0.05, base=0.01), 1),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
        max_connections=64,
        **options,
    )
    return aredis.Redis(connection_pool=pool)


async def check_modules(client: Redis, url: str) -> None:
    """Fail with one sentence when the server cannot hold a vector index over JSON."""
    try:
        modules = await client.execute_command("MODULE", "LIST")  # type: ignore[no-untyped-call]
    except UNREACHABLE as exc:
        raise ServiceUnavailable(f"cannot reach Redis at {redact(url)}: {exc}") from exc
    except RedisError as exc:
        raise ServiceUnavailable(f"Redis at {redact(url)} refused MODULE LIST: {exc}") from exc
    found = {_text(m[b"name"]): int(m[b"ver"]) for m in modules}
    for name, (label, minimum) in REQUIRED_MODULES.items():
        if found.get(name, 0) < minimum:
            raise ServiceUnavailable(
                f"Redis at {redact(url)} lacks the {label} module (version "
                f"{minimum // 10000}.{minimum // 100 % 100} or later): use Redis 8, "
                "Redis Stack 7.2+, or unset REDIS_URL for the embedded server"
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
    client = connect(url, settings.redis_timeout)
    supervisor = asyncio.create_task(_supervise(embedded)) if embedded is not None else None
    try:
        await check_modules(client, url)
        await warn_on_eviction_policy(client, url)
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
