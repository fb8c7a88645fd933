"""What the server tells its operators: the request log line, /metrics, the exported schema."""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from lookalike.schema.execution.schema import sdl
from lookalike.services.core.logs import LogFormatter
from tests.conftest import API_KEY, gql, metric, metric_labels, metric_names
from tests.paths import ROOT
from tests.photos import IDENTIFY, PREFLIGHT, orl, send

SCHEMA_FILE = ROOT / "schema.graphql"


def test_schema_graphql_is_the_schema_the_code_serves() -> None:
    assert SCHEMA_FILE.read_text(encoding="utf-8") == sdl(), (
        "the API changed: run `lookalike schema > schema.graphql` and review the diff"
    )


def test_metrics_count_requests_errors_latency_round_trips_and_models(api: TestClient) -> None:
    operation = "Nested" + uuid.uuid4().hex[:8]
    query = f'query {operation} {{ book(id: "9") {{ similar(k: 3) {{ book {{ title }} }} }} }}'
    before = api.get("/metrics").text
    gql(api, query)
    gql(api, query.replace('"9"', '"no-such-book"'))
    search = (
        f'query {operation}S {{ searchBooks(text: "{uuid.uuid4().hex} robots") {{ distance }} }}'
    )
    gql(api, search)
    response = api.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    after = response.text

    assert metric(after, "lookalike_graphql_requests_total", operation=operation) == 2
    assert (
        metric(after, "lookalike_graphql_errors_total", operation=operation, code="BOOK_NOT_FOUND")
        == 1
    )
    latency = "lookalike_graphql_request_duration_seconds_count"
    assert metric(after, latency, operation=operation) == 2
    trips = "lookalike_redis_round_trips_per_request_count"
    assert metric(after, trips) - metric(before, trips) == 3
    model = "lookalike_model_inference_seconds_count"
    assert metric(after, model, model="text") == metric(before, model, model="text") + 1
    assert metric(after, "lookalike_catalogue_books") == 1486
    assert "lookalike_enrolled_people" in metric_names(after)


def test_operation_names_cannot_grow_the_metrics_without_bound(api: TestClient) -> None:
    for n in range(110):
        gql(api, f'query Flood{n} {{ book(id: "9") {{ id }} }}')
    names = metric_labels(api.get("/metrics").text, "lookalike_graphql_requests_total", "operation")
    assert len(names) <= 100 + 2  # the first hundred, "anonymous" and "other"
    assert "other" in names


def test_one_log_line_per_request_with_its_cost_and_no_secrets(
    api: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    text = f"a secret search {uuid.uuid4().hex}"
    with caplog.at_level(logging.INFO, logger="lookalike.http"):
        gql(api, "query Find($t: String!) { searchBooks(text: $t, k: 2) { distance } }", t=text)
        send(api, IDENTIFY, orl("s1", 1), headers=PREFLIGHT, k=1)
    lines = [r for r in caplog.records if r.getMessage() == "graphql"]
    assert len(lines) == 2
    search, photo = (json.loads(LogFormatter(as_json=True).format(r)) for r in lines)
    assert search["operation"] == "Find"
    assert search["round_trips"] >= 1
    assert search["model_ms"] > 0  # a new text: the model ran
    assert search["duration_ms"] >= search["model_ms"]
    assert search["errors"] == []
    assert search["client"] == "testclient"
    assert photo["model_ms"] > 0
    # These fields and no others: no variables, headers or uploaded bytes.
    assert (
        set(search)
        == set(photo)
        == {
            *("ts", "level", "logger", "msg", "operation", "duration_ms", "round_trips"),
            *("model_ms", "errors", "client"),
        }
    )
    logged = caplog.text + "".join(LogFormatter(as_json=True).format(r) for r in caplog.records)
    assert text not in logged
    assert API_KEY not in logged
