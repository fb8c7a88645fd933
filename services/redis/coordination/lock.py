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
from collections.abc import AsyncIterator

from redis.asyncio.lock import Lock
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
    renewing = asyncio.create_task(_renew(lock, ttl))
    try:
        yield
    finally:
        renewing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await renewing
        with contextlib.suppress(RedisError, *UNREACHABLE):
            await lock.release()  # lost (expired while Redis was away): nothing to free


async def _renew(lock: Lock, ttl: float) -> None:
    while True:
        await asyncio.sleep(ttl / 3)
        try:
            await lock.reacquire()
        except (RedisError, *UNREACHABLE) as exc:  # LockError too; a full Redis: try again
            log.warning("could not renew the lock %r: %s", lock.name, exc)
