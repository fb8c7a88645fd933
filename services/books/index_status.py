"""The book index's size and progress, with FT.INFO kept off everything that runs often.

FT.INFO walks the index's tag and term tries on Redis's one thread: 0.3-0.6 s at a million
books (bench.scale), during which every other command waits. Readiness probes, metrics
scrapes, every searchBooks (may its answer be kept?) and the index watch of every process
need the status, so it is read from FT.INFO only when it can have changed, and shared:

- **A marker** says when: whether FT._LIST lists the index, its generation (a new value at
  every FT.CREATE: ``indexes.generation_key``), its recorded definition, the catalogue's
  version (every writer of books makes a new one) and Redis's run id (a restart
  re-indexes). It is one cheap round trip.
- **One status for every process.** Whoever reads FT.INFO leaves the status, with the marker
  it was read under and what it took, in ``index-status:<index>``. Another process, a worker
  or a server on another machine, adopts it instead of asking FT.INFO itself.
- **One reader at a time.** When FT.INFO is due, a process claims the read (``SET NX PX``
  on ``index-status-reader:<index>``); the others keep what they have until the shared
  status is newer. A new index (another generation or definition, Redis restarted) counts
  as still building for those others meanwhile: nothing they knew is about it.
- **Books written do not make FT.INFO run per write.** When only the version moved, FT.INFO
  runs again no sooner than ten times what it last took (``indexes.info_spacing``), across
  every process. So a stream of API writes into a million books costs at most a tenth of Redis's
  thread, not a read per process every tick. The size EF_RUNTIME follows lags the writes by
  that much: seconds.
- **While the index is built** (percent_indexed below 1), FT.INFO runs no sooner than ten
  times what it took, too: the thread that indexes is the one it stalls.
- After STATUS_MAX_AGE with nothing changed, it is read again (books written by something
  other than lookalike), by one process for all.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError

from lookalike.services.core.errors import ServiceUnavailable
from lookalike.services.redis.connection import Redis, is_cluster, redis_errors
from lookalike.services.redis.indexes import generation_key, index_info, info_spacing

# How long a status read by FT.INFO is trusted when nothing says it changed: books written
# by something other than lookalike move the size EF_RUNTIME follows within this.
STATUS_MAX_AGE = 60.0
# The shared status outlives STATUS_MAX_AGE, so that when it is due every process still has
# it to keep while the one that claimed the read reads it again.
SHARED_FOR = 2 * STATUS_MAX_AGE


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
    generation: str | None
    definition: str | None
    version: str | None
    run_id: str | None  # None on a cluster, and for a Redis user refused INFO

    def same_index(self, other: Marker) -> bool:
        """The same index on the same Redis: only books may have been written since. A run
        id missing on either side (a process refused INFO) is no evidence of a restart."""
        restarted = None not in (self.run_id, other.run_id) and self.run_id != other.run_id
        return not restarted and (self.listed, self.generation, self.definition) == (
            other.listed,
            other.generation,
            other.definition,
        )

    def matches(self, other: Marker) -> bool:
        """Nothing changed since: the same index, and the same version of its books."""
        return self.same_index(other) and self.version == other.version


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

    def spacing(self) -> float:
        return info_spacing(self.took)

    def spaced(self) -> bool:
        """Long enough since this read for FT.INFO to run again."""
        return self.age() >= self.spacing()

    def shared(self) -> str:
        status, marker = self.status, self.marker
        found = [marker.listed, marker.generation, marker.definition, marker.version]
        return json.dumps(
            {
                "status": [status.exists, status.documents, status.percent_indexed],
                "marker": [*found, marker.run_id],
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
    age = max(SHARED_FOR - ttl_ms / 1000, 0.0)
    return Reading(status, marker, time.monotonic() - age, took)


def _text(value: Any) -> str | None:
    """A marker's part as text (its keys may hold anything a Redis user wrote)."""
    if value is None:
        return None
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


@contextlib.asynccontextmanager
async def _reporting() -> AsyncIterator[None]:
    """Redis unreachable, or failing to answer (a cluster with a shard down), is
    ServiceUnavailable, never a missing index."""
    try:
        async with redis_errors():
            yield
    except RedisError as exc:
        raise ServiceUnavailable(f"Redis could not report on the book index: {exc}") from exc


class IndexStatusReader:
    """The status of one index: ``read`` asks FT.INFO now, ``current`` only when needed."""

    def __init__(
        self,
        client: Redis,
        index_name: str,
        version_key: str,
        definition_key: str,
    ) -> None:
        self.redis = client
        self.index_name = index_name
        self.version_key = version_key
        self.definition_key = definition_key
        self.generation_key = generation_key(index_name)
        self.shared_key = f"index-status:{index_name}"
        self.claim_key = f"index-status-reader:{index_name}"
        self.known: Reading | None = None  # the newest FT.INFO reading, this process's or shared
        self.last: Reading | None = None  # what ``current`` or ``read`` last answered

    async def read(self, marker: Marker | None = None) -> Reading:
        """FT.INFO now (with the marker read just before it), shared with every process.
        Redis unreachable, or failing to answer (a cluster with a shard down), is
        ServiceUnavailable, not 'missing'."""
        if marker is None:
            marker, _ = await self._look()
        started = time.monotonic()
        async with _reporting():
            info = await index_info(self.redis, self.index_name)
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
        self.known = self.last = reading
        # Best effort: a Redis that refuses the write (out of memory) leaves each process
        # reading for itself
        with contextlib.suppress(RedisError):
            await self.redis.set(self.shared_key, reading.shared(), px=math.ceil(SHARED_FOR * 1000))
        return reading

    async def current(self) -> Reading:
        """The status, read with FT.INFO only when the marker says it can have changed (and
        then as spaced as the module's docstring says); otherwise one cheap round trip, or
        none while the index is being built and FT.INFO is not due."""
        last = self.last
        building = last is not None and last.status.exists and not last.status.complete
        if building and last is not None and not last.spaced():
            return last  # being built, and FT.INFO is not due: no round trip
        marker, shared = await self._look()
        if not marker.listed:  # the index is gone: nothing to ask FT.INFO
            self.last = Reading(GONE, marker, time.monotonic(), 0.0)
            return self.last
        about_it = [
            r for r in (self.known, shared) if r is not None and r.marker.same_index(marker)
        ]
        latest = max(about_it, key=lambda r: r.read_at, default=None)
        if latest is not None:
            self.known = latest
            fresh = latest.age() < STATUS_MAX_AGE
            unchanged = latest.marker.matches(marker) and latest.status.complete
            # books were written, or the index is being built: FT.INFO once it is due
            if fresh and (unchanged or not latest.spaced()):
                self.last = latest
                return latest
        if await self._claim(latest or self.known):
            return await self.read(marker)
        # Another process is reading it now; what it finds is shared by the next look
        if latest is not None:
            self.last = latest
            return latest
        # Nothing known of this index (new, rebuilt, or Redis restarted): building, until read
        books = self.known.status.documents if self.known is not None else 0
        self.last = Reading(IndexStatus(True, books, 0.0), marker, time.monotonic(), 0.0)
        return self.last

    def next_read_in(self) -> float:
        """Seconds until FT.INFO is due again by the spacing (0: now)."""
        known = self.known
        return 0.0 if known is None else max(known.spacing() - known.age(), 0.0)

    async def _claim(self, basis: Reading | None) -> bool:
        """Whether this process reads FT.INFO now, and no other until the spacing of the
        last read has passed (or a second, for a first read)."""
        spacing = basis.spacing() if basis is not None else 1.0
        try:
            claimed = await self.redis.set(
                self.claim_key,
                secrets.token_hex(4),
                nx=True,
                px=max(math.ceil(spacing * 1000), 100),
            )
        except RedisError:
            return True
        return bool(claimed)

    async def _look(self) -> tuple[Marker, Reading | None]:
        """The marker, and the status another process shared: one round trip (on a cluster,
        a few at once: a keyless command names its node, and is not pipelined)."""
        keys = (self.generation_key, self.definition_key, self.version_key, self.shared_key)
        async with _reporting():
            if is_cluster(self.redis):
                names, generation, definition, version, shared, ttl = await asyncio.gather(
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
                names, generation, definition, version, shared, ttl, server = replies
        listed = self.index_name in {_text(n) for n in names}
        run_id = _text(server.get("run_id")) if isinstance(server, dict) else None
        marker = Marker(listed, _text(generation), _text(definition), _text(version), run_id)
        return marker, _adopted(shared, ttl)
