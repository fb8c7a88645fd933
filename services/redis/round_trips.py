"""A Redis round trip's turn and deadline, kept with redis-py's public API.

A command or a pipeline first takes a turn: at most ``max_connections`` round trips of a
client are in flight, so its pool never runs out, and past them a round trip waits up to
LOOKALIKE_REDIS_TIMEOUT for one (``NoConnectionFree`` then: Redis answers too slowly for the
requests in flight) instead of failing at once as redis-py's plain pool does. Then one
``asyncio.timeout`` bounds the whole round trip (connecting, sending, every reply, the one
retry): redis-py closes a connection whose send or read is interrupted (any exception,
cancellation included), so a round trip given up on leaves no half-read reply behind.
"""

from __future__ import annotations

import asyncio
from types import TracebackType

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError


class NoConnectionFree(RedisConnectionError):
    """Every connection of the pool stayed in use for the whole wait (LOOKALIKE_REDIS_TIMEOUT):
    Redis answers too slowly for the requests this process has in flight."""

    def __init__(self, wait: float) -> None:
        super().__init__(
            f"Redis is busy: no connection to it came free within {wait:g} s; try again shortly"
        )


class Turns:
    """At most ``size`` round trips at a time; one more waits up to ``wait`` for a turn."""

    def __init__(self, size: int, wait: float) -> None:
        self.size = size
        self.wait = wait
        self._free: asyncio.Semaphore | None = None  # made in the event loop that uses it

    async def take(self) -> None:
        free = self._free
        if free is None:
            free = self._free = asyncio.Semaphore(self.size)
        if not free.locked():
            await free.acquire()  # free: taken at once, no timer
            return
        try:
            async with asyncio.timeout(self.wait):
                await free.acquire()
        except TimeoutError:
            raise NoConnectionFree(self.wait) from None

    def give_back(self) -> None:
        assert self._free is not None
        self._free.release()


class RoundTrip:
    """``async with RoundTrip(turns, seconds)``: a turn taken (none for ``turns`` None, as for
    a pipeline that holds its turn across several round trips) and the deadline (none for
    ``seconds`` None), raising redis-py's TimeoutError past it. A class rather than a
    generator: it runs for every command."""

    __slots__ = ("_seconds", "_timeout", "_turns")

    def __init__(self, turns: Turns | None, seconds: float | None) -> None:
        self._turns = turns
        self._seconds = seconds
        self._timeout: asyncio.Timeout | None = None

    async def __aenter__(self) -> None:
        if self._turns is not None:
            await self._turns.take()
        self._timeout = asyncio.timeout(self._seconds)  # from the turn: the wait has its own
        await self._timeout.__aenter__()

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        assert self._timeout is not None
        try:
            await self._timeout.__aexit__(kind, error, trace)
        except TimeoutError:
            message = f"Timeout: no answer from Redis within {self._seconds:g} s"
            raise RedisTimeoutError(message) from None
        finally:
            if self._turns is not None:
                self._turns.give_back()
