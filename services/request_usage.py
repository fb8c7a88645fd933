"""What one request cost: Redis round trips and seconds spent in an embedding model.

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

from lookalike.services import metrics


@dataclass
class Usage:
    round_trips: int = 0
    model_seconds: float = 0.0


_current: ContextVar[Usage | None] = ContextVar("lookalike_usage", default=None)


def track_usage() -> Usage:
    """Count from here to the end of the current task (one HTTP request in the server)."""
    usage = Usage()
    _current.set(usage)
    return usage


def count_round_trip() -> None:
    usage = _current.get()
    if usage is not None:
        usage.round_trips += 1


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
