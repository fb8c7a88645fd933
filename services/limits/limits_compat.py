"""Every use lookalike makes of the undocumented parts of ``limits``: the Lua scripts of its
sliding window counter and the keys its Redis storage keeps a window under, run on
lookalike's own Redis client.

Why: ``SlidingWindowCounterRateLimiter.hit`` answers only yes or no, and what is left takes
``get_window_stats``, a second round trip (docs/decisions.md, "A budget per client"). Sent in
one pipeline on lookalike's client, the two scripts charge and read in one round trip, which
that client counts, bounds with LOOKALIKE_REDIS_TIMEOUT and answers SERVICE_UNAVAILABLE for
like every other, on one Redis or a cluster (both keys share a hash slot).

Relied on, checked with limits 5.8 (pyproject.toml bounds it below 5.9):

- ``RedisBridge.SCRIPT_ACQUIRE_SLIDING_WINDOW`` (KEYS previous, current; ARGV limit, expiry
  in seconds, amount; true when taken) and ``SCRIPT_SLIDING_WINDOW`` (KEYS the same; ARGV
  expiry; the previous count and TTL, the current count and TTL, TTLs in milliseconds);
- the keys ``RedisStorage`` gives them: ``<PREFIX>:{<item.key_for(...)>}/-1`` and
  ``<PREFIX>:{<item.key_for(...)>}``;
- the weighting ``SlidingWindowCounterRateLimiter`` counts with: the previous window's count
  times the share of it still in the window, plus the current count.

tests/services/limits/test_budget.py reads a window charged here with limits' own public
``get_window_stats``: a release that moved any of these fails there.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from limits import RateLimitItem
from limits.aio.storage import RedisStorage
from limits.aio.storage.redis.bridge import RedisBridge
from redis.exceptions import NoScriptError

from lookalike.services.redis.connection import Redis, in_one_round_trip

ACQUIRE = RedisBridge.SCRIPT_ACQUIRE_SLIDING_WINDOW
WINDOW = RedisBridge.SCRIPT_SLIDING_WINDOW


def _sha1(script: bytes) -> str:
    return hashlib.sha1(script, usedforsecurity=False).hexdigest()


ACQUIRE_SHA, WINDOW_SHA = _sha1(ACQUIRE), _sha1(WINDOW)


@dataclass(frozen=True, slots=True)
class Window:
    """A client's sliding window as Redis holds it, in seconds."""

    previous: int  # what was spent in the window before the current one
    previous_ttl: float  # how long the previous window still counts
    current: int
    current_ttl: float
    expiry: int  # the window's length

    def spent(self) -> int:
        """What the window holds, weighted as ``SlidingWindowCounterRateLimiter`` counts."""
        return int(self.previous * self.previous_ttl / self.expiry) + self.current


def window_keys(item: RateLimitItem, identity: str) -> tuple[str, str]:
    key = item.key_for(identity)
    current = f"{RedisStorage.PREFIX}:{{{key}}}"
    return f"{current}/-1", current


def _window(reply: Any, expiry: int) -> Window:
    previous, previous_ttl, current, current_ttl = (reply or [None] * 4)[:4]
    return Window(
        int(previous or 0),
        max(0.0, float(previous_ttl or 0)) / 1000,
        int(current or 0),
        max(0.0, float(current_ttl or 0)) / 1000,
        expiry,
    )


async def hit(client: Redis, item: RateLimitItem, identity: str, cost: int) -> tuple[bool, Window]:
    """Charge ``cost`` to ``identity``'s window if it fits, and the window after it, in one
    round trip (cost 0: the window alone)."""
    keys = window_keys(item, identity)
    expiry = item.get_expiry()
    read = ["EVALSHA", WINDOW_SHA, 2, *keys, expiry]
    commands: list[list[Any]] = [read]
    if cost:
        commands.insert(0, ["EVALSHA", ACQUIRE_SHA, 2, *keys, item.amount, expiry, cost])
    try:
        replies = await in_one_round_trip(client, commands)
    except NoScriptError:  # a Redis that restarted, or never saw them: load them, once
        await client.script_load(ACQUIRE)
        await client.script_load(WINDOW)
        replies = await in_one_round_trip(client, commands)
    taken = bool(replies[0]) if cost else True
    return taken, _window(replies[-1], expiry)
