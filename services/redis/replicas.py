"""Reads from healthy replicas of the primary; writes, and reads after a write, from the primary.

``LOOKALIKE_REDIS_REPLICAS`` names replicas of the Redis in REDIS_URL (each started with
``--replicaof`` and the same modules: a replica builds the same indexes from the replication
stream and answers FT.SEARCH). Every second each replica is checked: it must be a replica of
this primary (the same replication id), with its link up, not loading or resynchronising,
within ``LOOKALIKE_REPLICA_MAX_LAG`` bytes of the primary's replication offset, and with
every index fully indexed. Reads go round-robin to the replicas that passed; with none, to
the primary. A read that fails on a replica (it died since the last check, it is loading) is
run again on the primary and the replica is left out until it passes a check again, so a
replica's death costs a request some milliseconds, never an error.

What a reader sees right after a write: the request that wrote reads from the primary from
then on (read-your-writes within the request). Another request may read from a replica that
has not received the write yet: replication is asynchronous, a few milliseconds on a LAN
(README, "Past one machine").
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from redis.exceptions import RedisError

from lookalike.services.core.errors import ServiceUnavailable
from lookalike.services.core.request_usage import wrote
from lookalike.services.core.settings import Settings
from lookalike.services.redis.connection import (
    UNREACHABLE,
    Redis,
    connect,
    is_cluster,
    redact,
)
from lookalike.services.redis.indexes import (
    as_text,
    fully_indexed,
    info_of,
    info_spacing,
    version_key,
)
from lookalike.services.redis.round_trips import NoConnectionFree

log = logging.getLogger("lookalike.replicas")
T = TypeVar("T")
CHECK_EVERY = 1.0  # seconds between health checks
# FT.INFO walks an index (0.3-0.6 s of a replica's one thread at a million books): a replica
# that passed its last check, whose server has not restarted, has its indexes read again
# only this often. A resync or a restart fails a check first (link down, loading, syncing).
INDEXES_RECHECK_EVERY = 60.0


@dataclass
class Replica:
    url: str
    client: Redis
    healthy: bool = False
    reason: str = "not checked yet"
    lag_bytes: int | None = None
    # run id (and watched keys) and time of the last FT.INFO that found every index indexed
    indexes_read: tuple[str, float] | None = None
    # the indexes the last FT.INFO found still indexing, and when to ask again
    unready: tuple[list[str], float] = ([], 0.0)

    def set_health(self, healthy: bool, reason: str) -> None:
        if healthy != self.healthy:
            if healthy:
                log.info("replica serves reads", extra={"replica": redact(self.url)})
            else:
                log.warning(
                    "replica left out of reads",
                    extra={"replica": redact(self.url), "reason": reason},
                )
        self.healthy, self.reason = healthy, reason


@dataclass
class Reads:
    """Where a read goes: a healthy replica, or the primary."""

    primary: Redis
    replicas: Sequence[Replica] = ()
    max_lag: int = 1024 * 1024
    # Keys whose change means an index was rebuilt on the primary (the catalogue's version):
    # a replica re-indexes then with no restart and no break in its link
    watched: Sequence[str] = ()
    _turn: Any = field(default_factory=itertools.count)

    def pick(self) -> Replica | None:
        """The next healthy replica, or None for the primary (none healthy, or this request
        wrote and must read its own writes)."""
        if not self.replicas or wrote():
            return None
        healthy = [r for r in self.replicas if r.healthy]
        return healthy[next(self._turn) % len(healthy)] if healthy else None

    async def run(self, work: Callable[[Redis], Awaitable[T]]) -> T:
        """``work`` on a replica, or on the primary; again on the primary if the replica fails."""
        replica = self.pick()
        if replica is None:
            return await work(self.primary)
        try:
            return await work(replica.client)
        except (RedisError, ServiceUnavailable, *UNREACHABLE) as exc:
            if _unreachable(exc):
                replica.set_health(False, f"a read failed: {exc}")
            return await work(self.primary)

    async def check(self) -> None:
        """One health check of every replica against the primary."""
        try:
            primary = await self.primary.info("replication")
        except (RedisError, *UNREACHABLE):
            return  # the primary is away: reads fail over nowhere, nothing to judge
        await asyncio.gather(*(self._check(r, primary) for r in self.replicas))

    async def _check(self, replica: Replica, primary: dict[str, Any]) -> None:
        try:
            info = await replica.client.info("replication")
            loading = int((await replica.client.info("persistence")).get("loading", 0))
            run_id = str((await replica.client.info("server")).get("run_id"))
            if self.watched:
                run_id += repr(await replica.client.mget(self.watched))
            read = replica.indexes_read
            now = time.monotonic()
            if read is not None and read[0] == run_id and now - read[1] < INDEXES_RECHECK_EVERY:
                unready = []  # indexed when last read, and no check since saw it reload
            elif now < replica.unready[1]:  # still building: FT.INFO stalls it (info_spacing)
                unready = replica.unready[0]
            else:
                unready = await _unready_indexes(replica.client)
                spacing = info_spacing(time.monotonic() - now)
                replica.indexes_read = None if unready else (run_id, time.monotonic())
                replica.unready = (unready, time.monotonic() + spacing if unready else 0.0)
        except (RedisError, *UNREACHABLE) as exc:
            replica.indexes_read = None  # it may come back restarted, re-indexing
            replica.set_health(False, f"unreachable: {exc}")
            return
        lag = int(primary.get("master_repl_offset", 0)) - int(info.get("slave_repl_offset", 0))
        replica.lag_bytes = max(lag, 0)
        link_down = info.get("master_link_status") != "up"
        syncing = bool(int(info.get("master_sync_in_progress", 0)))
        problems = [
            info.get("role") != "slave" and "it is not a replica",
            info.get("master_replid") != primary.get("master_replid")
            and "it replicates another primary",
            link_down and "its link to the primary is down",
            syncing and "it is resynchronising",
            loading and "it is loading its data",
            lag > self.max_lag and f"it is {lag} bytes behind the primary",
            unready and f"index {unready[0]} is still indexing",
        ]
        reason = next((p for p in problems if p), "")
        if link_down or syncing or loading:  # each means its indexes are read in again
            replica.indexes_read = None
        replica.set_health(not reason, reason or "ok")

    async def watch(self, every: float = CHECK_EVERY) -> None:
        while True:
            await self.check()
            await asyncio.sleep(every)


async def _unready_indexes(client: Redis) -> list[str]:
    names = [as_text(n) for n in await client.execute_command("FT._LIST")]
    unready = []
    for name in names:
        info = await client.execute_command("FT.INFO", name)
        if isinstance(info, dict) and not fully_indexed(info_of(info)):
            unready.append(name)
    return unready


def _unreachable(exc: BaseException) -> bool:
    """The replica failed (not merely busy: every connection of this process's pool to it in
    use, which the primary may still serve)."""
    cause = exc.__cause__ if isinstance(exc, ServiceUnavailable) else exc
    if isinstance(cause, NoConnectionFree):
        return False
    return isinstance(cause, UNREACHABLE) or "LOADING" in str(exc)


@contextlib.asynccontextmanager
async def open_reads(settings: Settings, primary: Redis) -> AsyncIterator[Reads]:
    """The read routing for this primary, with its replicas checked every second."""
    if not settings.redis_replicas:
        yield Reads(primary)
        return
    if not settings.redis_url:
        raise ServiceUnavailable(
            "LOOKALIKE_REDIS_REPLICAS needs REDIS_URL: the embedded Redis listens on a Unix "
            "socket only, which no replica can follow"
        )
    if is_cluster(primary):
        raise ServiceUnavailable(
            "LOOKALIKE_REDIS_REPLICAS is for one primary; REDIS_URL names a cluster, whose "
            "shards have replicas of their own"
        )
    replicas = [
        Replica(u, connect(u, settings.redis_timeout, settings.redis_max_connections))
        for u in settings.redis_replicas
    ]
    reads = Reads(primary, replicas, settings.replica_max_lag, [version_key(settings.index_name)])
    await reads.check()
    for replica in replicas:
        if not replica.healthy:
            log.warning(
                "replica not used yet",
                extra={"replica": redact(replica.url), "reason": replica.reason},
            )
    watching = asyncio.create_task(reads.watch())
    try:
        yield reads
    finally:
        watching.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watching
        for replica in replicas:
            await replica.client.aclose()
