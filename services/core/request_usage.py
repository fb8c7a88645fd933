"""What one request cost: Redis round trips and seconds spent in an embedding model; and
whether it wrote, so that what it reads next comes from the primary, not a replica.

Counted where it happens (the Redis connection, the model calls) into a per-task context
variable, so one GraphQL request sees only its own usage even while others run beside it.
The request log line, ``extensions.cost`` and the Prometheus histograms all read it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass

from lookalike.services.core import metrics


@dataclass
class Usage:
    round_trips: int = 0
    model_seconds: float = 0.0
    wrote: bool = False  # this request changed data: its later reads go to the primary


_current: ContextVar[Usage | None] = ContextVar("lookalike_usage", default=None)
_inside_one: ContextVar[bool] = ContextVar("lookalike_one_round_trip", default=False)


def track_usage() -> Usage:
    """Count from here to the end of the current task (one HTTP request in the server)."""
    usage = Usage()
    _current.set(usage)
    return usage


def count_round_trip() -> None:
    usage = _current.get()
    if usage is not None and not _inside_one.get():
        usage.round_trips += 1


def note_write() -> None:
    """This request wrote to the primary: what it reads next must see it (read-your-writes)."""
    usage = _current.get()
    if usage is not None:
        usage.wrote = True


def wrote() -> bool:
    usage = _current.get()
    return usage is not None and usage.wrote


@contextlib.contextmanager
def one_round_trip() -> Iterator[None]:
    """Count what runs inside as one round trip: the parts of a cluster pipeline that go to
    several shards at once, and whatever the client does to deliver one command."""
    count_round_trip()
    token = _inside_one.set(True)
    try:
        yield
    finally:
        _inside_one.reset(token)


@contextlib.contextmanager
def model_time(model: str) -> Iterator[None]:
    """Time a model call for this request and for the process-wide histogram."""
    started = time.perf_counter()
    try:
        yield
    finally:
        elapsed = time.perf_counter() - started
        metrics.MODEL_SECONDS.labels(model).observe(elapsed)
        usage = _current.get()
        if usage is not None:
            usage.model_seconds += elapsed
