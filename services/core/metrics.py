"""Process metrics in Prometheus format, served at /metrics.

One registry for the process (not the client library's global one, which also collects
whatever other libraries register). Labels are bounded: operation names come from clients,
so only the first ``MAX_OPERATIONS`` distinct names get a series of their own.

Under ``lookalike serve --workers N`` every worker writes its values to files in
``PROMETHEUS_MULTIPROC_DIR`` (prometheus_client's multiprocess mode, chosen as the library is
imported), and a scrape of any worker reads them all: counters and histograms are the sum of
every worker's, the gauges the value last read.
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass
from functools import cache

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

REGISTRY = CollectorRegistry(auto_describe=True)
MAX_OPERATIONS = 100
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

REQUESTS = Counter(
    "lookalike_graphql_requests",
    "GraphQL requests answered, by operation name.",
    ["operation"],
    registry=REGISTRY,
)
ERRORS = Counter(
    "lookalike_graphql_errors",
    "Errors returned, by operation name and extensions.code (refusals before GraphQL count "
    "under operation 'http').",
    ["operation", "code"],
    registry=REGISTRY,
)
REFUSALS = Counter(
    "lookalike_http_refusals",
    "Requests (and connections) refused before GraphQL saw them, by status and code: the "
    "connection layer's 400, 408, 414, 431 and 503, and the endpoint's.",
    ["status", "code"],
    registry=REGISTRY,
)
LATENCY = Histogram(
    "lookalike_graphql_request_duration_seconds",
    "Time from the request's arrival to its answer.",
    ["operation"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
ROUND_TRIPS = Histogram(
    "lookalike_redis_round_trips_per_request",
    "Redis round trips one GraphQL request made.",
    buckets=(0, 1, 2, 3, 4, 5, 6, 8, 12, 20, 50, 100),
    registry=REGISTRY,
)
MODEL_SECONDS = Histogram(
    "lookalike_model_inference_seconds",
    "Time in an embedding model call (text: a batch of search texts; face: one photo).",
    ["model"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)
REFUSED_WRITES = Counter(
    "lookalike_redis_refused_writes",
    "Writes Redis refused because it reached its maxmemory, by what was written "
    "(search_text_cache and persisted_query: skipped, the answer was given; face: "
    "SERVICE_UNAVAILABLE).",
    ["writing"],
    registry=REGISTRY,
)
for _writing in ("search_text_cache", "persisted_query", "face"):  # at 0 from the start, so
    REFUSED_WRITES.labels(_writing)  # that an alert on their increase sees the first one
PLANNED_OPERATIONS = Counter(
    "lookalike_graphql_planned_operations",
    "Query operations in which plans (lookalike.schema.execution.plans) completed values: "
    "the fast path ran.",
    registry=REGISTRY,
)
FALLBACKS = Counter(
    "lookalike_graphql_fallbacks",
    "Query operations in which graphql-core's own execution completed values the fast path "
    "(plans, direct resolver calls) could not, by reason (lookalike.schema.plans.Fallback).",
    ["reason"],
    registry=REGISTRY,
)
FACE_DECODED_PIXELS = Counter(
    "lookalike_face_decoded_pixels",
    "Pixels the face workers decoded (a photo refused from its header adds none; a JPEG "
    "counts the pixels of the scales it was decoded at).",
    registry=REGISTRY,
)
CATALOGUE_BOOKS = Gauge(
    "lookalike_catalogue_books",
    "Books in the search index (read at scrape).",
    registry=REGISTRY,
    multiprocess_mode="mostrecent",
)
BOOKS_EF_RUNTIME = Gauge(
    "lookalike_books_ef_runtime",
    "EF_RUNTIME a KNN for similar books is sent with: LOOKALIKE_HNSW_EF_RUNTIME, or chosen "
    "from the books the index holds per shard (read at scrape).",
    registry=REGISTRY,
)
ENROLLED_PEOPLE = Gauge(
    "lookalike_enrolled_people",
    "People enrolled for identification (read at scrape).",
    registry=REGISTRY,
    multiprocess_mode="mostrecent",
)

_operations: set[str] = set()
_lock = threading.Lock()


_NAME = re.compile(r"[_A-Za-z][_0-9A-Za-z]{0,63}")


def operation_label(name: str | None) -> str:
    """The label for an operation: its name, 'anonymous', or 'other' past the bound.

    Only GraphQL names of at most 64 characters become labels (a client once sent a name of
    500,000 characters): anything else is 'other' too.
    """
    if not name:
        return "anonymous"
    if not _NAME.fullmatch(name):
        return "other"
    with _lock:
        if name in _operations:
            return name
        if len(_operations) < MAX_OPERATIONS:
            _operations.add(name)
            return name
    return "other"


@dataclass(frozen=True, slots=True)
class OperationSeries:
    label: str
    requests: Counter
    latency: Histogram


@cache  # at most MAX_OPERATIONS + 2 labels, so as many entries
def _series(label: str) -> OperationSeries:
    return OperationSeries(label, REQUESTS.labels(label), LATENCY.labels(label))


def operation_series(name: str | None) -> OperationSeries:
    """An operation's request count and latency series (the labelled children, found once)."""
    return _series(operation_label(name))


def render() -> bytes:
    if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        return generate_latest(REGISTRY)
    every_worker = CollectorRegistry()
    MultiProcessCollector(every_worker)  # type: ignore[no-untyped-call]
    return generate_latest(every_worker)
