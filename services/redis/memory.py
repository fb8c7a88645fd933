"""Whether Redis refuses writes now because it reached its ``maxmemory``, for /readyz.

Redis refuses a write (OOM) while the memory it counts, ``used_memory`` less
``mem_not_counted_for_evict`` (replication and AOF buffers), is over ``maxmemory`` and it
could evict nothing (``noeviction``, which the README advises, or nothing volatile left).
Reads and searches still work then: /readyz reports it in its answer and stays 200
(docs/decisions.md, "A full Redis"). ``INFO memory`` is cheap, but a probe may come every
second from each of several checkers: the answer is kept for ``every`` seconds.
"""

from __future__ import annotations

import time
from typing import Any

from redis.asyncio import RedisCluster
from redis.exceptions import ResponseError

from lookalike.services.redis.connection import Redis


def over_limit(info: dict[str, Any]) -> tuple[int, int] | None:
    """(counted bytes, maxmemory) when the node refuses writes, else None."""
    limit = int(info.get("maxmemory", 0))
    counted = int(info.get("used_memory", 0)) - int(info.get("mem_not_counted_for_evict", 0))
    return (counted, limit) if limit and counted > limit else None


class MemoryLimit:
    def __init__(self, client: Redis, every: float = 1.0) -> None:
        self.client = client
        self.every = every
        self._checked: tuple[float, str | None] = (-float("inf"), None)  # (when, reason)

    async def refusing_writes(self) -> str | None:
        """Why Redis refuses writes now (on a cluster: the first primary that does), or None.
        Raises what redis-py raises when Redis is away: the caller reports that already."""
        when, reason = self._checked
        if time.monotonic() - when < self.every:
            return reason
        reason = None
        try:
            infos = await self._infos()
        except ResponseError:  # INFO refused (a restricted user): nothing to tell
            infos = {}
        for node, info in infos.items():
            over = over_limit(info)
            if over is not None:
                where = f" on {node}" if isinstance(self.client, RedisCluster) else ""
                reason = (
                    f"redis refuses writes{where}: maxmemory reached "
                    f"({over[0]} bytes used of {over[1]})"
                )
                break
        self._checked = (time.monotonic(), reason)
        return reason

    async def _infos(self) -> dict[str, dict[str, Any]]:
        if isinstance(self.client, RedisCluster):
            replies = await self.client.execute_command(
                "INFO", "memory", target_nodes=self.client.get_primaries()
            )
            return {str(node): info for node, info in replies.items()}
        return {"redis": await self.client.info("memory")}
