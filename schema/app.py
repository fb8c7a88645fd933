"""The ASGI application: /graphql (GraphiQL on GET), /healthz, /readyz.

Built in one place with a lifespan that opens Redis (starting the embedded server when
REDIS_URL is unset), prepares the catalogue and closes everything on shutdown.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.http import GraphQLHTTPResponse, process_result
from strawberry.types import ExecutionResult

from lookalike.resolvers.context import Context
from lookalike.schema.http_guards import RequestGuards
from lookalike.schema.schema import build_schema
from lookalike.services.catalogue import Catalogue
from lookalike.services.catalogue_loader import open_catalogue
from lookalike.services.faces import open_faces
from lookalike.services.query_embeddings import QueryEmbeddings
from lookalike.services.redis_connection import UNREACHABLE, redact, start_counting
from lookalike.services.settings import Settings, get_settings
from lookalike.services.text_embedding import text_embedder

log = logging.getLogger("lookalike.http")


class GraphQLApp(GraphQL[Context, None]):
    async def get_context(self, request: Request | WebSocket, response: Any) -> Context:
        request.state.started = time.perf_counter()
        state = request.app.state
        context = Context(
            catalogue=state.catalogue,
            faces=state.faces,
            queries=state.queries,
            round_trips=start_counting(),
        )
        request.state.context = context
        return context

    async def process_result(
        self, request: Request, result: ExecutionResult
    ) -> GraphQLHTTPResponse:
        context: Context | None = getattr(request.state, "context", None)
        started: float = getattr(request.state, "started", time.perf_counter())
        codes = sorted({str((e.extensions or {}).get("code")) for e in result.errors or ()})
        log.info(
            "graphql",
            extra={
                "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                "round_trips": context.round_trips.count if context else 0,
                "errors": codes,
                "client": request.client.host if request.client else None,
            },
        )
        response = process_result(result)
        if context is not None:
            # What this request cost Redis, so clients and tests can watch for N+1 regressions.
            response["extensions"] = {"cost": {"redisRoundTrips": context.round_trips.count}}
        return response


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    """Ready when Redis answers and the index holds a fully indexed catalogue."""
    catalogue: Catalogue = request.app.state.catalogue
    try:
        await catalogue.redis.ping()
        status = await catalogue.status()
    except UNREACHABLE:
        return JSONResponse({"status": "unavailable", "reason": "redis unreachable"}, 503)
    if not status.exists:
        return JSONResponse({"status": "unavailable", "reason": "index missing"}, 503)
    if status.documents == 0 or status.percent_indexed < 1.0:
        reason = f"catalogue loading ({status.documents} books, {status.percent_indexed:.0%})"
        return JSONResponse({"status": "unavailable", "reason": reason}, 503)
    return JSONResponse({"status": "ready", "books": status.documents})


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or get_settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with (
            open_catalogue(settings) as (catalogue, url),
            open_faces(settings, catalogue.redis) as faces,
        ):
            app.state.catalogue = catalogue
            app.state.faces = faces
            app.state.queries = QueryEmbeddings(
                catalogue.redis, text_embedder, settings.search_cache_ttl
            )
            # Everything alive now lives as long as the process: keep the collector off it,
            # or each full collection walks the whole schema and library state mid-request.
            gc.collect()
            gc.freeze()
            log.info("ready", extra={"redis": redact(url), "index": settings.index_name})
            yield

    graphql = GraphQLApp(
        build_schema(settings),
        graphql_ide="graphiql" if settings.graphiql else None,
        multipart_uploads_enabled=True,
    )
    app = Starlette(
        routes=[
            Route("/graphql", graphql, methods=["GET", "POST"]),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
        ],
        lifespan=lifespan,
    )
    app.add_middleware(
        RequestGuards,
        max_body_bytes=settings.max_body_bytes,
        max_upload_bytes=settings.max_upload_bytes,
    )
    return app
