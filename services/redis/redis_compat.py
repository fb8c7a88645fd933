"""Every use lookalike makes of redis-py's undocumented parts, each saying what it relies on.

Checked with redis-py 8.2.0 and hiredis 3.5.0 (pyproject.toml bounds redis-py below 8.3).
tests/services/redis/ (a stopped Redis, a burst past the pool, packing, round trips counted)
and tests/services/books/test_batching.py run these against a real Redis; the cluster ones
against a real cluster (LOOKALIKE_TEST_REDISEARCH_COORD).
"""

from __future__ import annotations

from typing import Any

import hiredis
from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterPipeline, RedisCluster
from redis.asyncio.connection import Connection, parse_url
from redis.exceptions import DataError

from lookalike.services.core.request_usage import count_round_trip, one_round_trip
from lookalike.services.redis.round_trips import RoundTrip, Turns


def connection_options(url: str) -> dict[str, Any]:
    """The connection pool's options that ``url`` names, its connection class packing
    commands with hiredis (``_Packing``).

    Relies on ``parse_url`` (undocumented; ``ConnectionPool.from_url`` calls it) to read the
    URL as redis-py does, ``connection_class`` included (TLS, a socket file), so that the
    packing subclass derives from the class the URL asked for.
    """
    options: dict[str, Any] = dict(parse_url(url))
    options["connection_class"] = packing(options.get("connection_class", Connection))
    return options


def packing(connection_class: type[Connection]) -> type[Connection]:
    """``connection_class`` (plain, TLS or a socket file: what the URL asked for) with its
    commands packed by hiredis (``_Packing``)."""
    return type(f"Packing{connection_class.__name__}", (_Packing, connection_class), {})


class _Packing:
    """Commands packed in C by hiredis, as redis-py's synchronous client does: its asyncio
    client packs in Python, and one nested level sends a hundred FT.SEARCH commands.

    Relies on ``Connection.pack_command(*args)`` (undocumented) being how redis-py's asyncio
    client turns each command into bytes, for a command alone and in a pipeline
    (``pack_commands`` calls it), and on a list of bytes being a packed command it sends. The
    connection class itself is given through ``connection_class``, a documented setting.
    """

    def pack_command(self, *args: Any) -> list[bytes]:
        if isinstance(args[0], str) and " " in args[0]:  # "CONFIG GET": two words on the wire
            args = (*args[0].split(), *args[1:])
        if not _CONVERTED.isdisjoint(map(type, args)):  # one pass in C: most commands
            args = tuple(_packable(a) for a in args)
        return [hiredis.pack_command(args)]


_CONVERTED = frozenset({memoryview, bool})  # the argument types _packable changes


def _packable(value: Any) -> Any:
    if isinstance(value, memoryview):
        return value.tobytes()
    if isinstance(value, bool):  # redis-py refuses booleans too; never send True as 1
        raise DataError("a boolean cannot be sent to Redis; convert it first")
    return value


class RoundTripPipeline(Pipeline):
    """redis-py's pipeline, each execution a round trip counted, taken in turn and bounded by
    the client's deadline (round_trips.py). It holds its turn while it holds a connection:
    from its first command sent until ``reset``, as a transaction keeps its connection from
    WATCH to EXEC.

    Relies on the constructor ``Pipeline(connection_pool, response_callbacks, transaction,
    shard_hint)`` (what ``Redis.pipeline`` calls), on ``immediate_execute_command`` being how
    a watching pipeline (WATCH, the reads after it, SCRIPT EXISTS before scripts) sends a
    command at once, and on ``execute`` and ``reset`` returning the connection to the pool
    (``reset`` is called by ``execute`` and on leaving ``async with``).
    """

    turns: Turns
    seconds: float | None = None
    _holding = False

    async def _take_turn(self) -> None:
        if not self._holding:
            await self.turns.take()
            self._holding = True

    async def immediate_execute_command(self, *args: Any, **options: Any) -> Any:
        await self._take_turn()
        count_round_trip()
        async with RoundTrip(None, self.seconds):
            return await super().immediate_execute_command(*args, **options)  # type: ignore[no-untyped-call]

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        if not self.command_stack and not self.watching:
            return []
        await self._take_turn()
        try:
            count_round_trip()
            async with RoundTrip(None, self.seconds):
                return await super().execute(raise_on_error)
        finally:
            await self.reset()

    async def reset(self) -> None:  # type: ignore[override]  # Pipeline.reset, not RESET
        try:
            await super().reset()  # type: ignore[no-untyped-call]
        finally:
            if self._holding:
                self._holding = False
                self.turns.give_back()


def round_trip_pipeline(
    client: Any, transaction: bool, shard_hint: str | None, turns: Turns, seconds: float | None
) -> RoundTripPipeline:
    """The pipeline ``Redis.pipeline`` would make, as a ``RoundTripPipeline``."""
    pipe = RoundTripPipeline(
        client.connection_pool, client.response_callbacks, transaction, shard_hint
    )
    pipe.turns, pipe.seconds = turns, seconds
    return pipe


class CountingClusterPipeline(ClusterPipeline):
    """redis-py's cluster pipeline, taking a turn and counting one round trip: the shards'
    parts go out together, one wait.

    Relies on the constructor ``ClusterPipeline(client, transaction)`` (what
    ``RedisCluster.pipeline`` calls).
    """

    turns: Turns

    async def execute(
        self, raise_on_error: bool = True, allow_redirections: bool = True
    ) -> list[Any]:
        async with RoundTrip(self.turns, None):  # redis-py's socket_timeout bounds each step
            with one_round_trip():
                return await super().execute(raise_on_error, allow_redirections)


def counting_cluster_pipeline(
    cluster: RedisCluster, transaction: Any | None, turns: Turns
) -> CountingClusterPipeline:
    pipe = CountingClusterPipeline(cluster, transaction)  # type: ignore[abstract]
    pipe.turns = turns
    return pipe
