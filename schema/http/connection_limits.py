"""The limits a server facing the internet needs on its HTTP connections, and the framing
arithmetic they rest on (where a request's header section or body ends in a read).

uvicorn closes idle keep-alive connections, but it has no deadline for a request's headers
or body (a client sending one byte a second holds a connection for ever: slowloris, and every
byte resets the keep-alive timer), no bound on their size with its fast parser (an unfinished
header of 100 MB was buffered whole), no bound on open connections short of a count of busy
tasks, it reads a chunked body's trailer as more request headers, and it answers a malformed
request in plain text. The protocol class in uvicorn_compat.py, given to uvicorn through its
``http`` setting, adds:

- a deadline for the request line and headers, from the first byte of each request (and from
  the connection's opening, so a silent connection is closed too), and one for the body: 408;
- a bound on the raw bytes of each request's line and headers: 414 when the request line
  alone passes it, 431 otherwise;
- a bound on open connections, in all and from one address: past it, 503 and closed;
- a deadline for a client that does not read its answer (the connection is dropped);
- trailer fields are not headers;
- a JSON body with a code on every refusal, and on uvicorn's own 400, each counted in
  /metrics; a refused request never reaches the app, and a refusal waits for the answers
  owed to the requests pipelined before it.

Counting a request's header bytes needs to know where in a read its header section ends,
and httptools reports no positions. So a read is handed to the parser in pieces that end
where a request's header section or body ends: at the header section's empty line (empty
lines before a request line end nothing), after the bytes a Content-Length body still lacks,
after a chunked body's last chunk and trailer (its framing followed chunk by chunk: cutting
at every empty line would cost a parser call per empty line in the chunks' data), and at the
header limit. Within one piece a request is in one phase, so the pieces fed while reading
headers are exactly its header bytes, whether they came in one read with its body, with the
requests pipelined before it, or split anywhere across reads.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

REASONS = {400: "Bad Request", 408: "Request Timeout", 414: "URI Too Long",
           431: "Request Header Fields Too Large", 503: "Service Unavailable"}  # fmt: skip


def refusal_bytes(status: int, code: str, message: str) -> bytes:
    body = json.dumps({"errors": [{"message": message, "extensions": {"code": code}}]}).encode()
    head = (
        f"HTTP/1.1 {status} {REASONS[status]}\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


# An empty line: a line feed, maybe a carriage return, a line feed. llhttp wants CRLF; taking
# a bare LF too only adds places to cut, which is harmless.
_EMPTY_LINE = re.compile(rb"\n\r?\n")
REQUEST_LINE_BYTE = re.compile(rb"[^\r\n]")  # llhttp skips empty lines before a request
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,16}")


def empty_line_end(data: bytes, start: int, end: int, before: bytes) -> int:
    """The offset just past the first empty line that ends within ``data[start:end]``, or -1.
    The bytes before ``start`` were fed already; ``before`` holds the last bytes fed before
    ``data``, for a line feed that came in an earlier read."""
    if start < 2 and before[-1:] in (b"\n", b"\r"):
        prior = (before + data[:start])[-2:]
        found = _first_ending_after(prior + data[start : min(end, start + 2)], 0, len(prior))
        if found >= 0:
            return start + found - len(prior)
    return _first_ending_after(data, max(start - 2, 0), start, end)


def _first_ending_after(data: bytes, start: int, after: int, end: int | None = None) -> int:
    """The end of the first empty line in ``data[start:end]`` that ends past ``after``, or -1
    (the lines overlap: in three line feeds, the second empty line ends one byte later)."""
    end = len(data) if end is None else end
    match = _EMPTY_LINE.search(data, start, end)
    while match is not None and match.end() <= after:
        match = _EMPTY_LINE.search(data, match.start() + 1, end)
    return match.end() if match is not None else -1


class ChunkedEnd:
    """Follows a chunked body's framing over the bytes fed, to say where the body ends: just
    past the empty line after its last chunk and trailer. Cutting at every empty line would
    also find it, but chunk data full of empty lines would then cost a parser call every two
    bytes; this costs a few steps a chunk, whatever the chunks hold. llhttp refuses framing
    that breaks the rules (400), so on every body it accepts the two agree."""

    def __init__(self) -> None:
        self.left = 0  # bytes of the current chunk's data and its CRLF still to come
        self.line = b""  # the start of a chunk-size line split across reads
        self.last = False  # past the last chunk's size line: in the trailer

    def end(self, data: bytes, start: int, before: bytes) -> int:
        """Move over ``data[start:]``; the offset where the body ends in it, or -1."""
        position, size = start, len(data)
        while position < size:
            if self.last:
                return empty_line_end(data, position, size, before)
            if self.left:
                step = min(self.left, size - position)
                self.left -= step
                position += step
                continue
            line_end = data.find(b"\n", position)
            if line_end < 0:
                self.line = (self.line + data[position:])[:32]
                return -1
            digits = _CHUNK_SIZE.match(self.line + data[position : min(line_end, position + 32)])
            self.line = b""
            position = line_end + 1
            length = int(digits.group(), 16) if digits else 0
            if not length:
                self.last = True
                continue
            step = min(length + 2, size - position)  # its data, then CRLF
            self.left = length + 2 - step
            position += step
        return -1


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    max_header_bytes: int = 32 * 1024
    max_connections: int = 1000
    max_per_client: int = 128  # 0: no bound
