"""The ASGI application: /graphql (GraphiQL on GET), /healthz, /readyz, /metrics.

Built in one place with a lifespan that opens Redis (starting the embedded server when
REDIS_URL is unset), prepares the catalogue and closes everything on shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import sys
import threading
from collections.abc import AsyncIterator, Callable

from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lookalike.schema.execution.schema import build_schema, document_limits
from lookalike.schema.http.endpoint import GraphQLEndpoint
from lookalike.schema.http.graphiql import GraphiQLFiles
from lookalike.schema.http.guards import PREFLIGHT_HEADERS, RequestGuards
from lookalike.schema.http.observability import metrics_endpoint, observe_refusal
from lookalike.schema.http.persisted_queries import PersistedQueries
from lookalike.schema.limits.trusted_documents import TrustedDocuments
from lookalike.services import recovery
from lookalike.services.books.catalogue import Catalogue
from lookalike.services.books.loading.loader import autoload_unfinished, open_catalogue
from lookalike.services.core.api_keys import ApiKeys
from lookalike.services.core.errors import LookalikeError, ServiceUnavailable
from lookalike.services.core.logs import configure_logging
from lookalike.services.core.settings import Settings, get_settings
from lookalike.services.embeddings.query_vectors import QueryEmbeddings
from lookalike.services.embeddings.text_model import text_embedder
from lookalike.services.faces.recognition import open_faces
from lookalike.services.limits.budget import Budgets
from lookalike.services.redis.connection import UNREACHABLE, redact
from lookalike.services.redis.memory import MemoryLimit

log = logging.getLogger("lookalike.http")


async def not_found(request: Request, exc: Exception) -> Response:
    """Starlette's own 404 and 405 are plain text: every error here is JSON with a code."""
    status = getattr(exc, "status_code", 404)
    code = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(status, f"HTTP_{status}")
    observe_refusal(status, code, request.client.host if request.client else None)
    message = "nothing here: the API is at /graphql" if status == 404 else "method not allowed"
    body = {"errors": [{"message": message, "extensions": {"code": code}}]}
    return JSONResponse(body, status, headers=getattr(exc, "headers", None))


class CORS(CORSMiddleware):
    """Starlette's CORS, whose refused preflights are JSON with a code like every error here
    (Starlette answers them in plain text)."""

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code < 400:
            return response
        message = bytes(response.body).decode("utf-8", "replace")
        headers = {
            name: value
            for name, value in response.headers.items()
            if name not in ("content-length", "content-type")
        }
        body = {"errors": [{"message": message, "extensions": {"code": "CORS_REFUSED"}}]}
        return JSONResponse(body, response.status_code, headers=headers)


class StartupFailures:
    """A start-up refused on purpose (Redis unreachable or unfit, settings the index does not
    match) is said in its one sentence; its traceback goes to the debug log.

    Starlette reports a failed lifespan to the server with the formatted traceback, which
    uvicorn logs as the error: the sentence that matters would be its last line. The failed
    message is sent while Starlette handles the exception, so ``sys.exc_info`` names it.
    Under ``serve --workers N`` the failure is also left for the supervisor, which then exits
    3 as one process would, not 0 as uvicorn's supervisor does.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def reporting(message: Message) -> None:
            if message["type"] == "lifespan.startup.failed":
                error = sys.exc_info()[1]
                if isinstance(error, LookalikeError):
                    log.debug("start-up failed", exc_info=error)
                    message = {**message, "message": error.message}
                # a worker of ``serve --workers N`` tells its supervisor (imported here: the
                # server module builds uvicorn's protocol class as it is imported)
                from lookalike.schema.http.server import record_start_failure

                record_start_failure(message.get("message", ""))
            await send(message)

        await self.app(scope, receive, reporting)


async def home(request: Request) -> Response:
    return RedirectResponse("/graphql", status_code=307)


async def healthz(request: Request) -> Response:
    """Alive, and which process answered: under ``--workers`` each connection is one
    worker's."""
    return JSONResponse({"status": "ok", "pid": os.getpid()})


async def readyz(request: Request) -> Response:
    """Ready when Redis answers, the index holds a fully indexed catalogue, and the indexes
    are still of this process's settings (not converted under it by another process); with
    LOOKALIKE_READY_WAITS_FOR_MODELS, once the text model has loaded too. A
    Redis that refuses writes (maxmemory) still serves every read and search: "degraded", and
    200, so that a load balancer does not take every server of that Redis out at once
    (docs/decisions.md, "A full Redis")."""
    catalogue: Catalogue = request.app.state.catalogue
    memory: MemoryLimit = request.app.state.memory
    try:
        status = await catalogue.current_status()
        unfinished = await autoload_unfinished(catalogue)
        refusing = await memory.refusing_writes()
    except (ServiceUnavailable, *UNREACHABLE):
        return JSONResponse({"status": "unavailable", "reason": "redis unreachable"}, 503)
    if not status.exists:
        return JSONResponse({"status": "unavailable", "reason": "index missing"}, 503)
    changed = await recovery.changed_under(catalogue, request.app.state.faces.store)
    if changed is not None:
        return JSONResponse({"status": "unavailable", "reason": changed}, 503)
    if catalogue.loading or unfinished or status.documents == 0 or status.percent_indexed < 1:
        reason = f"catalogue loading ({status.documents} books, {status.percent_indexed:.0%})"
        return JSONResponse({"status": "unavailable", "reason": reason}, 503)
    if request.app.state.models_awaited and not text_embedder().warm.is_set():
        return JSONResponse({"status": "unavailable", "reason": "text model loading"}, 503)
    if refusing:
        return JSONResponse({"status": "degraded", "books": status.documents, "reason": refusing})
    return JSONResponse({"status": "ready", "books": status.documents})


def _on_sighup(reload: Callable[[], object]) -> bool:
    """Call ``reload`` on SIGHUP (the trusted documents), where signals can be had: the main
    thread's loop, as under ``lookalike serve``; not a test client's thread."""
    try:
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, reload)
    except (ValueError, RuntimeError, NotImplementedError):
        log.warning("SIGHUP cannot be handled here: the trusted documents will not reload")
        return False
    return True


def served_app() -> Starlette:
    """The app of a ``lookalike serve`` process, its logging set up first: a spawned worker
    starts with none. Workers' lines carry their pid, so that a log tells them apart."""
    settings = get_settings()
    configure_logging(settings.log_level, pid=settings.workers > 1)
    return create_app(settings)


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or get_settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with (
            open_catalogue(settings, announce=True) as (catalogue, url),
            open_faces(settings, catalogue.redis, catalogue.reads, announce=True) as faces,
        ):
            app.state.catalogue = catalogue
            app.state.faces = faces
            app.state.models_awaited = settings.ready_waits_for_models
            app.state.queries = QueryEmbeddings(
                catalogue.redis, text_embedder, settings.search_cache_size, reads=catalogue.reads
            )
            app.state.memory = MemoryLimit(catalogue.redis)
            app.state.persisted_queries = PersistedQueries(
                catalogue.redis, settings.persisted_queries_size
            )
            per_minute, full_key = settings.cost_per_minute, settings.full_key_cost_per_minute
            app.state.budgets = (
                Budgets(catalogue.redis, per_minute, full_key) if per_minute else None
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
            # The text model loads beside the first requests, once start-up is over: its
            # imports hold the interpreter for long stretches, and start-up's Redis commands,
            # waiting behind them, ran out of time. The face workers loaded theirs by now.
            warming = threading.Thread(target=text_embedder().warm_up, name="text-model")
            warming.daemon = True  # a shutdown does not wait for it
            warming.start()
            log.info("ready", extra={"redis": redact(url), "index": settings.index_name})
            if keys:
                log.info("mutations need an API key", extra={"keys": len(settings.api_keys)})
            else:
                log.warning(
                    "no LOOKALIKE_API_KEYS: mutations are accepted only from loopback clients"
                )
            reloading = trusted is not None and _on_sighup(trusted.reload)
            try:
                yield
            finally:
                watching.cancel()
                if reloading:
                    asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)

    keys = ApiKeys(settings.api_keys, settings.identify_keys)
    # read before anything starts: a broken list stops the server (ManifestError)
    trusted = TrustedDocuments(settings.trusted_documents) if settings.trusted_documents else None
    graphiql = GraphiQLFiles() if settings.graphiql else None
    graphql = GraphQLEndpoint(
        build_schema(settings),
        keys=keys,
        limits=document_limits(settings),
        introspection=settings.introspection,
        ide=graphiql.page if graphiql else None,
        trusted=trusted,
    )
    app = Starlette(
        routes=[
            Route("/graphql", graphql),  # every method: the endpoint refuses the others
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics_endpoint),
            Route("/", home),
            *(graphiql.routes() if graphiql else ()),
        ],
        lifespan=lifespan,
        exception_handlers={404: not_found, 405: not_found},
    )
    app.add_middleware(StartupFailures)
    app.add_middleware(
        RequestGuards,
        max_body_bytes=settings.max_body_bytes,
        max_upload_bytes=settings.max_upload_bytes,
        timeout=settings.request_timeout,
    )
    if settings.cors_origins:  # outermost, so refusals carry the CORS headers too
        app.add_middleware(
            CORS,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=[
                "accept",
                "authorization",
                "content-type",
                *map(bytes.decode, PREFLIGHT_HEADERS),
            ],
            max_age=600,
        )
    return app
