"""The answer to an operation its client's budget cannot pay for (services/limits/budget.py):
RATE_LIMITED, with when to come back; the endpoint sends it as HTTP 429 with Retry-After."""

from __future__ import annotations

from typing import Any

from graphql import GraphQLError

from lookalike.services.limits.budget import Spent

RATE_LIMITED = "RATE_LIMITED"


def rate_limited(spent: Spent, cost: int, node: Any = None) -> GraphQLError:
    return GraphQLError(
        f"this client's budget of {spent.per_minute:,} a minute has {spent.remaining:,} "
        f"left; the query costs {cost:,}: retry in {spent.retry_after} s",
        nodes=node,
        extensions={
            "code": RATE_LIMITED,
            "cost": cost,
            "remaining": spent.remaining,
            "retryAfter": spent.retry_after,
        },
    )
