"""ASGI guards in front of /graphql: body size, one Content-Type, no cross-site multipart
posts, a deadline.

Size is enforced while the body is received (the declared Content-Length first, then the
bytes as they arrive), so an oversized upload is refused without being buffered. Multipart is
the one content type a browser posts cross-site without a CORS preflight; like Apollo Server,
multipart requests must carry ``Apollo-Require-Preflight`` or ``X-Apollo-Operation-Name``,
which no plain HTML form can send. A request that has not started its answer within the
timeout is cancelled (its Redis commands and model wait with it) and answered 504 TIMEOUT.
"""

from __future__ import annotations

import asyncio
import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lookalike.schema.http.observability import observe_refusal

MULTIPART_OVERHEAD = 64 * 1024  # the operations and map parts beside the file
PREFLIGHT_HEADERS = (b"apollo-require-preflight", b"x-apollo-operation-name")


class _TooLarge(Exception):
    pass


async def _error(
    scope: Scope, send: Send, status: int, message: str, code: str, **extra: object
) -> None:
    client = scope.get("client")
    observe_refusal(status, code, client[0] if client else None)
    body = json.dumps({"errors": [{"message": message, "extensions": {"code": code, **extra}}]})
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body.encode()})


class _Tracked:
    """The response's send, remembering whether the answer has begun (then it is too late
    to answer with an error instead)."""

    def __init__(self, send: Send) -> None:
        self.send = send
        self.started = False

    async def __call__(self, message: Message) -> None:
        self.started = self.started or message["type"] == "http.response.start"
        await self.send(message)


class RequestGuards:
    def __init__(
        self, app: ASGIApp, *, max_body_bytes: int, max_upload_bytes: int, timeout: float
    ) -> None:
        self.app = app
        self.max_body = max_body_bytes
        self.max_upload = max_upload_bytes
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        response = _Tracked(send)
        try:
            async with asyncio.timeout(self.timeout):
                await self._guarded(scope, receive, response)
        except TimeoutError:
            if not response.started:
                message = f"the request took longer than {self.timeout:g} s"
                await _error(scope, send, 504, message, "TIMEOUT", timeoutSeconds=self.timeout)

    async def _guarded(self, scope: Scope, receive: Receive, send: _Tracked) -> None:
        if scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        types = [value for name, value in scope["headers"] if name == b"content-type"]
        if len(types) > 1:
            # one layer would read one and another layer the other (a 5 MB body passed the
            # 1 MB JSON limit that way): a request must say once what it is
            message = "the request has several Content-Type headers; send one"
            await _error(scope, send, 400, message, "BAD_REQUEST")
            return
        multipart = headers.get(b"content-type", b"").lower().startswith(b"multipart/")
        if multipart and not any(h in headers for h in PREFLIGHT_HEADERS):
            await _error(
                scope,
                send,
                400,
                "multipart requests need an Apollo-Require-Preflight or X-Apollo-Operation-Name "
                "header (protection against cross-site request forgery)",
                "BAD_REQUEST",
            )
            return
        limit = self.max_upload + MULTIPART_OVERHEAD if multipart else self.max_body
        what = "upload" if multipart else "request body"

        async def too_large() -> None:
            message = f"the {what} is larger than {limit:,} bytes"
            await _error(scope, send, 413, message, "PAYLOAD_TOO_LARGE", max=limit)

        declared = headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            await too_large()
            return

        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _TooLarge
            return message

        try:
            await self.app(scope, counting_receive, send)
        except _TooLarge:
            if not send.started:
                await too_large()
