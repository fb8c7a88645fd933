"""/graphql over HTTP, as the GraphQL-over-HTTP spec and Apollo's clients expect it.

One endpoint: GET (queries only; GraphiQL for a browser), HEAD (GET's answer without its
body) and POST (JSON, or multipart for uploads). The response's media type follows ``Accept``:
clients that ask for ``application/graphql-response+json`` get the spec's status codes (400
for a document that does not parse, 422 for one that does not validate, an ambiguous
operation, variables that do not coerce or JSON that is not a GraphQL request, 401/403 for a
refused caller, 294 for partial data); ``application/json`` clients (and clients that send
no Accept) keep the classic 200 with ``errors``. Requests that are not GraphQL at all (bad
JSON, unsupported media type, a mutation over GET) are refused with a 4xx and a JSON body with
a code, whatever was accepted. docs/decisions.md compares each status with the spec's text
and the graphql-http audit.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from graphql import ExecutionResult, GraphQLError, OperationType
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from lookalike.resolvers.context import Context
from lookalike.schema.execution.errors import code_of, coded, public
from lookalike.schema.execution.schema import Schema
from lookalike.schema.http.observability import observe_refusal, observe_request
from lookalike.schema.http.persisted_queries import PersistedQueries
from lookalike.schema.http.request import GraphQLRequest, Refused, read_request
from lookalike.schema.limits.budget import RATE_LIMITED
from lookalike.schema.limits.trusted_documents import TrustedDocuments
from lookalike.schema.operations.documents import DocumentLimits, parse_document, select_operation
from lookalike.services.core.api_keys import ApiKeys, Caller
from lookalike.services.core.errors import LookalikeError
from lookalike.services.core.request_usage import Usage, track_usage
from lookalike.services.limits.budget import Budgets, ClientBudget, Spent

GRAPHQL_RESPONSE = "application/graphql-response+json"
JSON = "application/json"
IDE = Callable[[Request], Awaitable[Response]]

# The status of a response without data (a request error), per the GraphQL-over-HTTP spec,
# for clients that accept application/graphql-response+json.
SPEC_STATUS = {
    "GRAPHQL_PARSE_FAILED": 400,
    "GRAPHQL_VALIDATION_FAILED": 422,
    "OPERATION_RESOLUTION_FAILURE": 422,
    "BAD_USER_INPUT": 422,
    "QUERY_TOO_COMPLEX": 422,
    "UNAUTHENTICATED": 401,
    "FORBIDDEN": 403,
    "PERSISTED_QUERY_NOT_FOUND": 200,  # Apollo Server's answer, which every Apollo link expects
    "PERSISTED_QUERY_NOT_SUPPORTED": 200,
    "SERVICE_UNAVAILABLE": 503,
}
TOO_MANY_REQUESTS = 429  # RATE_LIMITED, whatever the client accepts: every client knows it
NO_STORE = {"cache-control": "private, no-cache, must-revalidate"}
# HEAD is GET without the body (RFC 9110 9.3.2; Starlette's routes serve it with every GET):
# the same answer's status and headers, so it runs the same query; uvicorn drops the body.
SAFE = ("GET", "HEAD")


def negotiate(accept: str | None) -> str | None:
    """The media type to answer in, or None when the client accepts neither JSON type."""
    if not accept or not accept.strip():
        return JSON
    best: str | None = None
    best_q = 0.0
    for part in accept.split(","):
        media, *parameters = part.split(";")
        media = media.strip().lower()
        if media == GRAPHQL_RESPONSE:
            candidate = GRAPHQL_RESPONSE
        elif media in (JSON, "application/*", "*/*"):
            candidate = JSON
        else:
            continue
        q = 1.0
        for parameter in parameters:
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if q > best_q or (q == best_q > 0 and candidate == GRAPHQL_RESPONSE):
            best, best_q = candidate, q
    return best


def encode(body: dict[str, Any]) -> bytes:
    """orjson, not json.dumps: far faster on a large nested answer (docs/decisions.md,
    "Figures that comments used to quote")."""
    return orjson.dumps(body)


def refusal(refused: Refused, media: str | None) -> Response:
    status = refused.spec_status if media == GRAPHQL_RESPONSE else refused.status
    error = {"message": refused.message, "extensions": {"code": refused.code}}
    return Response(encode({"errors": [error]}), status, refused.headers, media_type=JSON)


class GraphQLEndpoint:
    def __init__(
        self,
        schema: Schema,
        *,
        keys: ApiKeys,
        limits: DocumentLimits,
        introspection: bool,
        ide: IDE | None,
        trusted: TrustedDocuments | None = None,
    ) -> None:
        self.schema = schema
        self.keys = keys
        self.trusted = trusted
        self.limits = limits
        self.hide_suggestions = not introspection
        self.ide = ide

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        try:
            response = await self.handle(request)
        except ClientDisconnect:  # gone before its body came (or refused by the connection
            return  # layer meanwhile): there is nobody to answer, and nothing went wrong here
        await response(scope, receive, send)

    async def handle(self, request: Request) -> Response:
        started = time.perf_counter()
        client = request.client.host if request.client else None
        if request.method not in SAFE and request.method != "POST":
            refused = Refused(
                405, "METHOD_NOT_ALLOWED", "use GET or POST", headers={"allow": "GET, HEAD, POST"}
            )
            return self._refused(refused, JSON, client)
        if request.method in SAFE and self._wants_page(request):
            if self.ide is None:
                return self._refused(
                    Refused(404, "NOT_FOUND", "GraphiQL is switched off on this server"),
                    JSON,
                    client,
                )
            return await self.ide(request)
        media = negotiate(request.headers.get("accept"))
        if media is None:
            refused = Refused(406, "NOT_ACCEPTABLE", f"accept {GRAPHQL_RESPONSE} or {JSON}")
            return self._refused(refused, JSON, client)
        usage = track_usage()
        try:
            graphql_request = await read_request(request)
            return await self._run(request, graphql_request, media, usage, started, client)
        except Refused as refused:
            return self._refused(refused, media, client)

    def _wants_page(self, request: Request) -> bool:
        accept = request.headers.get("accept", "")
        return (
            "text/html" in accept
            and "query" not in request.query_params
            and "extensions" not in request.query_params
            and "documentId" not in request.query_params
        )

    def _refused(self, refused: Refused, media: str | None, client: str | None) -> Response:
        observe_refusal(refused.status, refused.code, client)
        return refusal(refused, media)

    async def _run(
        self,
        request: Request,
        graphql_request: GraphQLRequest,
        media: str,
        usage: Usage,
        started: float,
        client: str | None,
    ) -> Response:
        persisted: PersistedQueries = request.app.state.persisted_queries
        budgets: Budgets | None = request.app.state.budgets
        caller = self.keys.caller(request.headers.get("authorization"), client)
        budget = budgets.of(caller) if budgets is not None else None
        operation_name: str | None = None
        register: str | None = None
        try:
            listed = self.trusted.documents if self.trusted is not None else None
            only_listed = listed is not None and caller.key != "valid"  # full keys: anything
            resolved = await persisted.resolve(graphql_request, listed, only_listed=only_listed)
            register = resolved.register
            document = parse_document(resolved.query, self.limits)
            operation = select_operation(document, graphql_request.operation_name)
            operation_name = operation.name.value if operation.name else None
            if graphql_request.method == "GET" and operation.operation != OperationType.QUERY:
                raise Refused(
                    405,
                    "METHOD_NOT_ALLOWED",
                    "a mutation must be sent with POST",
                    headers={"allow": "POST"},
                )
            context = self._context(request, usage, operation_name, caller, budget)
            result = await self.schema.run(document, operation, graphql_request.variables, context)
        except GraphQLError as error:  # a request error found before execution
            result = ExecutionResult(data=None, errors=[coded(error, "BAD_REQUEST")])
        except LookalikeError as error:  # Redis away or busy when looking a persisted query up
            wrapped = GraphQLError(error.message, original_error=error)
            result = ExecutionResult(data=None, errors=[coded(wrapped, "BAD_REQUEST")])
        errors = result.errors or []
        started_execution = result.data is not None or any(e.path is not None for e in errors)
        if register is not None and started_execution:
            await persisted.register(register, graphql_request.query or "")
        spent = await _left(budget)
        codes = sorted({code_of(e) for e in errors})
        observe_request(operation_name, time.perf_counter() - started, usage, codes, client)
        return self._response(result, started_execution, media, usage, spent)

    def _context(
        self,
        request: Request,
        usage: Usage,
        operation_name: str | None,
        caller: Caller,
        budget: ClientBudget | None,
    ) -> Context:
        state = request.app.state
        return Context(
            catalogue=state.catalogue,
            faces=state.faces,
            queries=state.queries,
            usage=usage,
            caller=caller,
            operation_name=operation_name,
            budget=budget,
        )

    def _response(
        self,
        result: ExecutionResult,
        with_data: bool,
        media: str,
        usage: Usage,
        spent: Spent | None,
    ) -> Response:
        body: dict[str, Any] = {}
        errors = result.errors or []
        if with_data:
            body["data"] = result.data
        if errors:
            body["errors"] = [public(e, hide_suggestions=self.hide_suggestions) for e in errors]
        # What this request cost Redis, so clients and tests can watch for N+1 regressions.
        cost: dict[str, int] = {"redisRoundTrips": usage.round_trips}
        if spent is not None:  # the client's budget: what this answer took, what is left
            cost |= {"charged": spent.charged, "remaining": spent.remaining}
            cost["perMinute"] = spent.per_minute
        body["extensions"] = {"cost": cost}
        headers: dict[str, str] = {}
        status = 200
        if errors and not with_data:
            code = code_of(errors[0])
            if code.startswith("PERSISTED_QUERY"):
                headers = dict(NO_STORE)
            if code == RATE_LIMITED and spent is not None:
                status = TOO_MANY_REQUESTS
                headers["retry-after"] = str(spent.retry_after)
            elif media == GRAPHQL_RESPONSE:
                status = SPEC_STATUS.get(code, 500 if code == "INTERNAL_SERVER_ERROR" else 400)
                if status == 401:
                    headers["www-authenticate"] = "Bearer"
        elif errors and media == GRAPHQL_RESPONSE:
            status = 294  # partial success: data and errors, per the spec
        return Response(encode(body), status, headers, media_type=f"{media}; charset=utf-8")


async def _left(budget: ClientBudget | None) -> Spent | None:
    """The client's budget after this request; None without one, or while Redis is away
    (the answer goes out without the figure)."""
    if budget is None:
        return None
    try:
        return await budget.left()
    except LookalikeError:
        return None
