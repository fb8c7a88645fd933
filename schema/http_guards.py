"""ASGI guards in front of /graphql: body size, and no cross-site multipart posts.

Size is enforced while the body is received (the declared Content-Length first, then the
bytes as they arrive), so an oversized upload is refused without being buffered. Multipart is
the one content type a browser posts cross-site without a CORS preflight; like Apollo Server,
multipart requests must carry ``Apollo-Require-Preflight`` or ``X-Apollo-Operation-Name``,
which no plain HTML form can send.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

MULTIPART_OVERHEAD = 64 * 1024  # the operations and map parts beside the file
PREFLIGHT_HEADERS = (b"apollo-require-preflight", b"x-apollo-operation-name")


class _TooLarge(Exception):
    pass


async def _error(send: Send, status: int, message: str, code: str, **extra: object) -> None:
    body = json.dumps({"errors": [{"message": message, "extensions": {"code": code, **extra}}]})
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body.encode()})


class RequestGuards:
    def __init__(self, app: ASGIApp, *, max_body_bytes: int, max_upload_bytes: int) -> None:
        self.app = app
        self.max_body = max_body_bytes
        self.max_upload = max_upload_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        multipart = headers.get(b"content-type", b"").startswith(b"multipart/")
        if multipart and not any(h in headers for h in PREFLIGHT_HEADERS):
            await _error(
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
            await _error(send, 413, message, "PAYLOAD_TOO_LARGE", max=limit)

        declared = headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            await too_large()
            return

        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _TooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _TooLarge:
            if not started:
                await too_large()
