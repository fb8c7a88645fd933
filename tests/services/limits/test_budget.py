"""The budget's window is limits' own: what lookalike charges (its scripts run on lookalike's
client, services/limits/limits_compat.py), limits' public ``SlidingWindowCounterRateLimiter``
reads, and what limits charges, lookalike counts. A limits release that moved its keys or
changed its scripts' replies fails here."""

from __future__ import annotations

import asyncio
import uuid

from limits.aio.storage import RedisStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter

from lookalike.services.core.api_keys import Caller
from lookalike.services.limits.budget import Budgets, wait_for
from lookalike.services.limits.limits_compat import Window
from lookalike.services.redis.connection import open_client


def limits_uri(redis_url: str) -> str:
    """The URI limits' storage takes for the Redis ``redis_url`` names."""
    if redis_url.startswith("unix://"):
        return "async+redis+" + redis_url
    return "async+" + redis_url


def test_limits_reads_what_lookalike_charges_and_the_other_way(redis_url: str) -> None:
    async def scenario() -> None:
        client = await open_client(redis_url, 5.0)
        storage = RedisStorage(limits_uri(redis_url), implementation="redispy")
        limiter = SlidingWindowCounterRateLimiter(storage)
        try:
            budgets = Budgets(client, 100, None)
            caller = Caller("missing", loopback=False, address=f"192.0.2.{uuid.uuid4().int % 250}")
            budget = budgets.of(caller)
            assert budget is not None
            first = await budget.spend(30)
            assert (first.charged, first.remaining) == (30, 70)
            stats = await limiter.get_window_stats(budgets.item, caller.budget_id)
            assert stats.remaining == 70
            assert await limiter.hit(budgets.item, caller.budget_id, cost=50)
            again = budgets.of(caller)
            assert again is not None
            refused = await again.spend(30)  # 20 left
            assert (refused.charged, refused.remaining) == (0, 20)
            assert 1 <= refused.retry_after <= 120
            await limiter.clear(budgets.item, caller.budget_id)
        finally:
            await client.aclose()

    asyncio.run(scenario())


def test_the_wait_is_until_the_cost_fits() -> None:
    """A minute's spending fades out over the next: what the previous window holds frees
    in proportion; past it, the current window has to roll over first."""
    fading = Window(previous=100, previous_ttl=30.0, current=0, current_ttl=90.0, expiry=60)
    assert fading.spent() == 50
    assert wait_for(fading, 100, 60) == 6.0  # 10 over: a tenth of the previous 100 in 60 s
    assert wait_for(fading, 100, 50) == 0.0
    current = Window(previous=0, previous_ttl=0.0, current=100, current_ttl=100.0, expiry=60)
    assert wait_for(current, 100, 50) == 40.0 + 30.0  # rolls in 40 s, then half fades


def test_a_redis_that_forgot_the_scripts_is_taught_them_again(redis_url: str) -> None:
    """After a restart (or SCRIPT FLUSH) Redis knows no script: the charge loads them and
    goes on, with the count it had."""

    async def scenario() -> None:
        client = await open_client(redis_url, 5.0)
        try:
            budgets = Budgets(client, 100, None)
            caller = Caller("missing", loopback=False, address=f"192.0.2.{uuid.uuid4().int % 250}")
            first = budgets.of(caller)
            assert first is not None
            assert (await first.spend(10)).remaining == 90
            await client.script_flush()
            second = budgets.of(caller)
            assert second is not None
            spent = await second.spend(10)
            assert (spent.charged, spent.remaining) == (10, 80)
        finally:
            await client.aclose()

    asyncio.run(scenario())
