"""The ASGI application: /graphql (GraphiQL on GET), /healthz, /readyz, /metrics.

Built in one place with a lifespan that opens Redis (starting the embedded server when
REDIS_URL is unset), prepares the catalogue and closes everything on shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from cross_web import HTTPException
from starlette.applications import Starlette
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.http import GraphQLHTTPResponse, process_result
from strawberry.types import ExecutionResult
from strawberry.types.unset import UNSET

from lookalike.resolvers.context import Context
from lookalike.schema.http_guards import PREFLIGHT_HEADERS, RequestGuards
from lookalike.schema.observability import metrics_endpoint, observe_refusal, observe_request
from lookalike.schema.schema import build_schema
from lookalike.services import recovery
from lookalike.services.api_keys import ApiKeys
from lookalike.services.catalogue import Catalogue
from lookalike.services.catalogue_loader import open_catalogue
from lookalike.services.errors import ServiceUnavailable
from lookalike.services.faces import open_faces
from lookalike.services.query_embeddings import QueryEmbeddings
from lookalike.services.redis_connection import UNREACHABLE, redact
from lookalike.services.request_usage import track_usage
from lookalike.services.settings import Settings, get_settings
from lookalike.services.text_embedding import text_embedder

log = logging.getLogger("lookalike.http")
HTTP_CODES = {
    400: "BAD_REQUEST",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
}


class GraphQLApp(GraphQL[Context, None]):
    def __init__(self, *args: Any, keys: ApiKeys, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.keys = keys

    async def run(self, request: Any, context: Any = UNSET, root_value: Any = UNSET) -> Any:
        """Strawberry answers a request it cannot read (no query, not JSON, wrong method)
        in plain text; here it gets the same JSON error shape, with a code, as the rest."""
        try:
            return await super().run(request, context, root_value)
        except HTTPException as exc:
            code = HTTP_CODES.get(exc.status_code, f"HTTP_{exc.status_code}")
            observe_refusal(exc.status_code, code, _client(request))
            body = {"errors": [{"message": exc.reason, "extensions": {"code": code}}]}
            return JSONResponse(body, exc.status_code)

    async def get_context(self, request: Request | WebSocket, response: Any) -> Context:
        request.state.started = time.perf_counter()
        state = request.app.state
        context = Context(
            catalogue=state.catalogue,
            faces=state.faces,
            queries=state.queries,
            usage=track_usage(),
            caller=self.keys.caller(request.headers.get("authorization"), _client(request)),
        )
        request.state.context = context
        return context

    async def process_result(
        self, request: Request, result: ExecutionResult
    ) -> GraphQLHTTPResponse:
        context: Context | None = getattr(request.state, "context", None)
        response = process_result(result)
        if context is None:  # refused before a context was made (e.g. a bad HTTP method)
            return response
        started: float = request.state.started
        codes = sorted({str((e.extensions or {}).get("code")) for e in result.errors or ()})
        seconds = time.perf_counter() - started
        observe_request(context.operation_name, seconds, context.usage, codes, _client(request))
        # What this request cost Redis, so clients and tests can watch for N+1 regressions.
        response["extensions"] = {"cost": {"redisRoundTrips": context.usage.round_trips}}
        return response


def _client(request: Request | WebSocket) -> str | None:
    return request.client.host if request.client else None


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    """Ready when Redis answers and the index holds a fully indexed catalogue."""
    catalogue: Catalogue = request.app.state.catalogue
    try:
        status = await catalogue.status()
    except (ServiceUnavailable, *UNREACHABLE):
        return JSONResponse({"status": "unavailable", "reason": "redis unreachable"}, 503)
    if not status.exists:
        return JSONResponse({"status": "unavailable", "reason": "index missing"}, 503)
    if catalogue.loading or status.documents == 0 or status.percent_indexed < 1.0:
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
                catalogue.redis, text_embedder, settings.search_cache_size
            )
            watching = asyncio.create_task(
                recovery.watch(
                    catalogue, faces.store, autoload=settings.catalogue_autoload, every=2.0
                )
            )
            # Everything alive now lives as long as the process: keep the collector off it,
            # or each full collection walks the whole schema and library state mid-request.
            gc.collect()
            gc.freeze()
            log.info("ready", extra={"redis": redact(url), "index": settings.index_name})
            if keys:
                log.info("mutations need an API key", extra={"keys": len(settings.api_keys)})
            else:
                log.warning(
                    "no LOOKALIKE_API_KEYS: mutations are accepted only from loopback clients"
                )
            try:
                yield
            finally:
                watching.cancel()

    keys = ApiKeys(settings.api_keys, settings.identify_keys)
    graphql = GraphQLApp(
        build_schema(settings),
        keys=keys,
        graphql_ide="graphiql" if settings.graphiql else None,
        multipart_uploads_enabled=True,
    )
    app = Starlette(
        routes=[
            Route("/graphql", graphql),  # every method: Strawberry refuses the others
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics_endpoint),
        ],
        lifespan=lifespan,
    )
    app.add_middleware(
        RequestGuards,
        max_body_bytes=settings.max_body_bytes,
        max_upload_bytes=settings.max_upload_bytes,
        timeout=settings.request_timeout,
    )
    if settings.cors_origins:  # outermost, so refusals carry the CORS headers too
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["authorization", "content-type", *map(bytes.decode, PREFLIGHT_HEADERS)],
            max_age=600,
        )
    return app
