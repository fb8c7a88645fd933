"""A lean HTTP/1.1 keep-alive client for the benchmarks, on asyncio streams.

Both sides of every comparison are timed through it, so what it costs is the same on both
sides; it costs little (a prepared request, a header scan, one read of Content-Length bytes),
so on this 2-core machine it leaves the servers as much CPU as it can. httpx adds about
0.6 ms a request here, which would blur ratios near 1.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import urlsplit


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, url: str) -> Connection:
        parts = urlsplit(url)
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port or 80)
        return cls(reader, writer)

    async def send(self, request: bytes) -> tuple[int, bytes]:
        """One request, prepared by ``post`` or ``get``; the status and the body."""
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        return status, await self.reader.readexactly(length)

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


class BlockingConnection:
    """One keep-alive connection for a script that asks one thing at a time, on an event
    loop of its own; each answer must be a 200 without errors."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.loop = asyncio.new_event_loop()
        self.connection = self.loop.run_until_complete(Connection.open(url))

    def send(self, request: bytes) -> dict[str, Any]:
        """The answer to a request prepared by ``post``."""
        status, body = self.loop.run_until_complete(self.connection.send(request))
        answer: dict[str, Any] = json.loads(body)
        assert status == 200, answer
        assert "errors" not in answer, answer
        return answer

    def post(self, query: str, **variables: Any) -> dict[str, Any]:
        return self.send(post(self.url, {"query": query, "variables": variables}))

    def close(self) -> None:
        self.loop.run_until_complete(self.connection.close())
        self.loop.close()


def post(url: str, payload: dict[str, Any]) -> bytes:
    """A prepared POST of a JSON body: built once, sent many times."""
    parts = urlsplit(url)
    body = json.dumps(payload).encode()
    return (
        f"POST {parts.path or '/'} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def get(url: str) -> bytes:
    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    return f"GET {target} HTTP/1.1\r\nHost: {parts.netloc}\r\n\r\n".encode()
