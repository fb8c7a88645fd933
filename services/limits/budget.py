"""A budget of query cost per client and minute, shared by every process through Redis.

Each client (a full API key, else its address: ``Caller.budget_id``) may spend
LOOKALIKE_COST_PER_MINUTE of the cost ``schema/limits/cost.py`` computes, in a sliding
window: the minute before now, the previous minute's spending weighted by the share of it
still inside (limits' sliding window counter; docs/decisions.md says why not a moving or a
fixed window). An operation is charged as it starts, once its cost is known and before any
resolver runs: one that does not fit runs nothing and is told when it would
(``retry_after``). One round trip charges and reads what is left (limits_compat.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from limits import RateLimitItemPerMinute

from lookalike.services.core.api_keys import Caller
from lookalike.services.limits.limits_compat import Window, hit
from lookalike.services.redis.connection import Redis

NAMESPACE = "lookalike-cost"


@dataclass(frozen=True, slots=True)
class Spent:
    """A client's budget after a request: what it was charged and what is left."""

    per_minute: int
    charged: int  # 0: refused, or not run
    remaining: int
    retry_after: int = 0  # refused: whole seconds until the cost asked for would fit


def wait_for(window: Window, limit: int, cost: int) -> float:
    """Seconds until ``cost`` fits in ``window`` with nothing more spent: the previous
    minute's spending fades out linearly over what is left of it; once the current minute
    has lasted a whole window it becomes the previous one and fades the same way."""
    over = window.spent() + cost - limit
    if over <= 0:
        return 0.0
    fading = window.previous * window.previous_ttl / window.expiry
    if window.previous and fading >= over:
        return over * window.expiry / window.previous
    # the current window becomes the previous one when its TTL falls to one expiry
    rolls_in = max(0.0, window.current_ttl - window.expiry)
    if window.current <= limit - cost:
        return rolls_in
    return rolls_in + window.expiry * (1 - (limit - cost) / window.current)


class ClientBudget:
    """One client's budget for one request: ``spend`` charges it, ``left`` only reads."""

    def __init__(self, redis: Redis, item: RateLimitItemPerMinute, identity: str) -> None:
        self.redis = redis
        self.item = item
        self.identity = identity
        self.spent: Spent | None = None

    async def spend(self, cost: int) -> Spent:
        """Charge ``cost`` (at least 1: every answer is work) if it fits the minute's budget."""
        cost = max(cost, 1)
        taken, window = await hit(self.redis, self.item, self.identity, cost)
        limit = self.item.amount
        remaining = max(0, limit - window.spent())
        if taken:
            self.spent = Spent(limit, cost, remaining)
        else:
            wait = max(1, math.ceil(wait_for(window, limit, cost)))
            self.spent = Spent(limit, 0, remaining, wait)
        return self.spent

    async def left(self) -> Spent:
        """What is left, for an answer that ran nothing (and so is not charged)."""
        if self.spent is None:
            _, window = await hit(self.redis, self.item, self.identity, 0)
            self.spent = Spent(self.item.amount, 0, max(0, self.item.amount - window.spent()))
        return self.spent


class Budgets:
    """The budgets of this deployment: LOOKALIKE_COST_PER_MINUTE for every client, and
    LOOKALIKE_FULL_KEY_COST_PER_MINUTE for each full key (unset: the same; 0: none)."""

    def __init__(self, redis: Redis, per_minute: int, full_key_per_minute: int | None) -> None:
        self.redis = redis
        self.item = RateLimitItemPerMinute(per_minute, namespace=NAMESPACE)
        full = per_minute if full_key_per_minute is None else full_key_per_minute
        self.full_key = RateLimitItemPerMinute(full, namespace=NAMESPACE) if full else None

    def of(self, caller: Caller) -> ClientBudget | None:
        """The budget this caller's request spends; None: it has none."""
        item = self.full_key if caller.key == "valid" else self.item
        if item is None:
            return None
        return ClientBudget(self.redis, item, caller.budget_id)
