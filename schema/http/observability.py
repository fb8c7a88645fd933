"""Seeing what the server does: one log line and the metrics of every request, /metrics.

The log line carries the operation name, duration, Redis round trips, model time, error codes
and client address; never a header (keys), a variable or uploaded bytes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from starlette.requests import Request
from starlette.responses import Response

from lookalike.services.core import metrics
from lookalike.services.core.errors import ServiceUnavailable
from lookalike.services.core.request_usage import Usage
from lookalike.services.redis.connection import UNREACHABLE

log = logging.getLogger("lookalike.http")


def observe_request(
    operation: str | None,
    seconds: float,
    usage: Usage,
    codes: Sequence[str],
    client: str | None,
) -> None:
    series = metrics.operation_series(operation)
    series.requests.inc()
    series.latency.observe(seconds)
    metrics.ROUND_TRIPS.observe(usage.round_trips)
    for code in codes:
        metrics.ERRORS.labels(series.label, code).inc()
    log.info(
        "graphql",
        extra={
            "operation": operation if operation is None else operation[:64],
            "duration_ms": round(seconds * 1000, 2),
            "round_trips": usage.round_trips,
            "model_ms": round(usage.model_seconds * 1000, 2),
            "errors": list(codes),
            "client": client,
        },
    )


def observe_refusal(status: int, code: str, client: str | None) -> None:
    """A request refused before GraphQL saw it (size, CSRF, timeout, a malformed request)."""
    metrics.REFUSALS.labels(str(status), code).inc()
    metrics.ERRORS.labels("http", code).inc()
    log.info("refused", extra={"status": status, "errors": [code], "client": client})


async def metrics_endpoint(request: Request) -> Response:
    """Prometheus scrape: the gauges are read from Redis now, and kept if it is away."""
    state = request.app.state
    try:
        books = (await state.catalogue.current_status()).documents
        people = await state.faces.store.count()
    except (ServiceUnavailable, *UNREACHABLE):
        pass  # Redis is away: the gauges keep their last values, the counters still count
    else:
        metrics.CATALOGUE_BOOKS.set(books)
        metrics.BOOKS_EF_RUNTIME.set(state.catalogue.queries.plain_ef())
        metrics.ENROLLED_PEOPLE.set(people)
    return Response(metrics.render(), media_type=metrics.CONTENT_TYPE)
