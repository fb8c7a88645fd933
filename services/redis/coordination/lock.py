"""A lock that several lookalike processes on one Redis agree on, held while work runs.

API processes start together (replicas behind a load balancer, a rolling deploy): creating an
index or loading the shipped catalogue must happen once, while the others wait for it. The
lock is redis-py's (SET NX with an expiry, released only by its holder), renewed in the
background while the work runs, so a crashed holder frees it within ``ttl`` seconds and a long
load never loses it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from redis.exceptions import RedisError

from lookalike.services.core.errors import ServiceUnavailable
from lookalike.services.redis.connection import UNREACHABLE, Redis, redis_errors

log = logging.getLogger(__name__)


@contextlib.asynccontextmanager
async def held_lock(
    client: Redis, name: str, *, ttl: float = 15.0, wait: float = 600.0
) -> AsyncIterator[None]:
    """Hold ``name`` for the length of the block; wait up to ``wait`` seconds for it."""
    lock = client.lock(name, timeout=ttl, sleep=0.1, blocking_timeout=wait)
    async with redis_errors():
        if not await lock.acquire():
            raise ServiceUnavailable(
                f"another lookalike process has held {name!r} for over {wait:g} s; "
                "is one stuck? The lock expires by itself if its holder died"
            )
    try:
        async with renewed(lock.reacquire, ttl / 3, f"the lock {name!r}"):
            yield
    finally:
        with contextlib.suppress(RedisError, *UNREACHABLE):
            await lock.release()  # lost (expired while Redis was away): nothing to free


@contextlib.asynccontextmanager
async def renewed(
    renew: Callable[[], Awaitable[object]], every: float, what: str
) -> AsyncIterator[None]:
    """Run ``renew`` every ``every`` seconds in the background for the length of the block.
    A renewal that fails (Redis away, or refusing writes at its maxmemory; a lock already
    lost) is logged and tried again at the next turn: the task must outlive any Redis error,
    or what it keeps alive would expire while its holder runs."""

    async def renewing() -> None:
        while True:
            await asyncio.sleep(every)
            try:
                await renew()
            except (RedisError, *UNREACHABLE) as exc:
                log.warning("could not renew %s: %s", what, exc)

    task = asyncio.create_task(renewing())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
