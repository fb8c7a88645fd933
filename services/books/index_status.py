"""The book index's size and progress, with FT.INFO kept off everything that runs often.

FT.INFO walks the index's tag and term tries on Redis's one thread: 0.3-0.6 s at a million
books (bench.scale), during which every other command waits. Readiness probes, metrics
scrapes, every searchBooks (may its answer be kept?) and the index watch of every process
need the status, so it is read from FT.INFO only when it can have changed, and shared:

- **A marker** says when: whether FT._LIST lists the index, its recorded definition (a
  rebuild changes it), the catalogue's version (every writer of books makes a new one) and
  Redis's run id (a restart re-indexes). It is one cheap round trip.
- **One status for every process.** Whoever reads FT.INFO leaves the status, with the marker
  it was read under and what it took, in ``index-status:<index>`` (expiring after
  STATUS_MAX_AGE). Another process, a worker or a server on another machine, adopts it
  instead of asking FT.INFO itself.
- **Books written do not make FT.INFO run per write.** When only the version moved, FT.INFO
  runs again no sooner than ten times what it last took, across every process (a claim
  key names who reads). So a stream of API writes into a million books costs at most a
  tenth of Redis's thread, not a read per process every tick. The size EF_RUNTIME follows
  lags the writes by that much: seconds. A change of index (listed, definition, run id) is
  read at once.
- **While the index is built** (percent_indexed below 1), FT.INFO runs no sooner than ten
  times what it took, too: the thread that indexes is the one it stalls.
- After STATUS_MAX_AGE with nothing changed, it is read again (books written by something
  other than lookalike).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import secrets
import time
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError

from lookalike.services.core.errors import ServiceUnavailable
from lookalike.services.redis.connection import Redis, is_cluster, redis_errors
from lookalike.services.redis.indexes import index_info

# How long a status read by FT.INFO is trusted when nothing says it changed: books written
# by something other than lookalike move the size EF_RUNTIME follows within this.
STATUS_MAX_AGE = 60.0
# FT.INFO again (while indexing, or after books were written) no sooner than this many
# times what it last took: at most a tenth of Redis's thread.
SPACING = 10.0


@dataclass(frozen=True, slots=True)
class IndexStatus:
    exists: bool
    documents: int
    percent_indexed: float

    @property
    def complete(self) -> bool:
        return self.exists and self.percent_indexed >= 1


GONE = IndexStatus(exists=False, documents=0, percent_indexed=0.0)


@dataclass(frozen=True, slots=True)
class Marker:
    """What moves when the status can have: see the module's docstring."""

    listed: bool
    definition: str | None
    version: str | None
    run_id: str | None  # None on a cluster, and for a Redis user refused INFO

    def same_index(self, other: Marker) -> bool:
        """The same index on the same Redis: only books may have been written since."""
        return (self.listed, self.definition, self.run_id) == (
            other.listed,
            other.definition,
            other.run_id,
        )


@dataclass(frozen=True, slots=True)
class Reading:
    """A status FT.INFO gave, the marker it was read under, when (this process's clock) and
    the seconds FT.INFO took."""

    status: IndexStatus
    marker: Marker
    read_at: float
    took: float

    def age(self) -> float:
        return time.monotonic() - self.read_at

    def spaced(self) -> bool:
        """Long enough since this read for FT.INFO to run again."""
        return self.age() >= SPACING * self.took

    def shared(self) -> str:
        status, marker = self.status, self.marker
        return json.dumps(
            {
                "status": [status.exists, status.documents, status.percent_indexed],
                "marker": [marker.listed, marker.definition, marker.version, marker.run_id],
                "took": self.took,
            }
        )


def _adopted(raw: Any, ttl_ms: Any) -> Reading | None:
    """The status another process shared, or None when there is none (or it is unreadable)."""
    if not isinstance(raw, bytes) or not isinstance(ttl_ms, int) or ttl_ms <= 0:
        return None
    try:
        found = json.loads(raw)
        status = IndexStatus(bool(found["status"][0]), int(found["status"][1]),
                             float(found["status"][2]))  # fmt: skip
        marker = Marker(*found["marker"])
        took = float(found["took"])
    except (ValueError, KeyError, TypeError, IndexError):
        return None
    age = max(STATUS_MAX_AGE - ttl_ms / 1000, 0.0)
    return Reading(status, marker, time.monotonic() - age, took)


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, Exception):
        return None
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


class IndexStatusReader:
    """The status of one index: ``read`` asks FT.INFO now, ``current`` only when needed."""

    def __init__(self, client: Redis, index_name: str, version_key: str, definition_key: str):
        self.redis = client
        self.index_name = index_name
        self.version_key = version_key
        self.definition_key = definition_key
        self.shared_key = f"index-status:{index_name}"
        self.claim_key = f"index-status-reader:{index_name}"
        self.known: Reading | None = None

    async def read(self, marker: Marker | None = None) -> Reading:
        """FT.INFO now (with the marker read just before it), shared with every process.
        Redis unreachable, or failing to answer (a cluster with a shard down), is
        ServiceUnavailable, not 'missing'."""
        if marker is None:
            marker, _ = await self._look()
        started = time.monotonic()
        try:
            async with redis_errors():
                info = await index_info(self.redis, self.index_name)
        except RedisError as exc:
            raise ServiceUnavailable(f"Redis could not report on the book index: {exc}") from exc
        if info is None:
            status = GONE
        else:
            status = IndexStatus(
                exists=True,
                documents=int(info.get("num_docs", 0)),  # on a cluster, summed over the shards
                percent_indexed=float(info.get("percent_indexed", 0.0)),
            )
        now = time.monotonic()
        reading = Reading(status, marker, now, now - started)
        self.known = reading
        with contextlib.suppress(RedisError):  # a user that may not write it: its own only
            await self.redis.set(
                self.shared_key, reading.shared(), px=math.ceil(STATUS_MAX_AGE * 1000)
            )
        return reading

    async def current(self) -> Reading:
        """The status, read with FT.INFO only when the marker says it can have changed (and
        then as spaced as the module's docstring says); otherwise one cheap round trip, or
        none while the index is being built and FT.INFO is not due."""
        known = self.known
        building = known is not None and known.status.exists and not known.status.complete
        if building and known is not None and not known.spaced():
            return known  # being built, and FT.INFO is not due: no round trip
        marker, shared = await self._look()
        if not marker.listed:  # the index is gone: nothing to ask FT.INFO
            self.known = Reading(GONE, marker, time.monotonic(), 0.0)
            return self.known
        latest = max((r for r in (known, shared) if r is not None), key=lambda r: r.read_at,
                     default=None)  # fmt: skip
        if (
            latest is not None
            and latest.marker.same_index(marker)
            and latest.age() < STATUS_MAX_AGE
            and (
                (latest.marker == marker and latest.status.complete)
                # books were written, or the index is being built: FT.INFO when it is
                # due, by one process; the others take what it shares
                or not latest.spaced()
                or not await self._claim(latest.took)
            )
        ):
            self.known = latest
            return latest
        return await self.read(marker)

    def next_read_in(self) -> float:
        """Seconds until FT.INFO is due again by the spacing (0: now)."""
        known = self.known
        return 0.0 if known is None else max(SPACING * known.took - known.age(), 0.0)

    async def _claim(self, took: float) -> bool:
        """Whether this process reads FT.INFO now, and no other for the next few seconds."""
        try:
            claimed = await self.redis.set(
                self.claim_key,
                secrets.token_hex(4),
                nx=True,
                px=max(math.ceil(SPACING * took * 1000), 100),
            )
        except RedisError:
            return True
        return bool(claimed)

    async def _look(self) -> tuple[Marker, Reading | None]:
        """The marker, and the status another process shared: one round trip (on a cluster,
        a few at once: a keyless command names its node, and is not pipelined)."""
        keys = (self.version_key, self.definition_key, self.shared_key)
        try:
            async with redis_errors():
                if is_cluster(self.redis):
                    names, version, definition, shared, ttl = await asyncio.gather(
                        self.redis.execute_command("FT._LIST", target_nodes="random"),
                        *(self.redis.get(key) for key in keys),
                        self.redis.pttl(self.shared_key),
                    )
                    server: Any = None  # no run id: see Marker
                else:
                    async with self.redis.pipeline(transaction=False) as pipe:
                        pipe.execute_command("FT._LIST")
                        for key in keys:
                            pipe.get(key)
                        pipe.pttl(self.shared_key)
                        pipe.execute_command("INFO", "server")
                        replies = await pipe.execute(raise_on_error=False)
                    for reply in replies[:-1]:  # INFO may be refused (an ACL): no run id
                        if isinstance(reply, Exception):
                            raise reply
                    names, version, definition, shared, ttl, server = replies
        except RedisError as exc:
            raise ServiceUnavailable(f"Redis could not report on the book index: {exc}") from exc
        listed = self.index_name in {_text(n) for n in names}
        run_id = _text(server.get("run_id")) if isinstance(server, dict) else None
        marker = Marker(listed, _text(definition), _text(version), run_id)
        return marker, _adopted(shared, ttl)
