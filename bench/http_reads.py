"""What cutting each read into pieces costs: uvicorn's own protocol against ours, in process.

``lookalike serve``'s protocol hands a read to httptools in pieces that end where a header
section or a body can end (schema/http/uvicorn_compat.py). This feeds the same reads to uvicorn's
HttpToolsProtocol (the baseline) and to ours, each request answered by an app that writes an
empty 200, on one event loop with a transport that keeps nothing: a small GET, a 56 KB
multipart upload in one read, ten pipelined POSTs in one read, and a chunked body. The two
sides take turns within each run; three runs; the figures are microseconds of this process's
CPU time per request (wall time on a shared machine measures the neighbours).

    .venv/bin/python -m bench.http_reads
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable
from typing import Any

import httpx
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from lookalike.schema.http.connection_limits import ConnectionLimits
from lookalike.schema.http.uvicorn_compat import limited_protocol


async def empty_answer(scope: Any, receive: Any, send: Any) -> None:
    while (await receive()).get("more_body"):
        pass
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"0")]}
    )
    await send({"type": "http.response.body", "body": b""})


class Sink(asyncio.Transport):
    """A transport that takes every answer and never closes."""

    def write(self, data: Any) -> None:
        pass

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 8000) if name in ("sockname", "peername") else default

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def raw(method: str, **body: Any) -> bytes:
    request = httpx.Request(method, "http://lookalike/graphql?query=%7B__typename%7D", **body)
    content = request.read()
    lines = [f"{method} {request.url.raw_path.decode()} HTTP/1.1"]
    lines += [f"{name}: {value}" for name, value in request.headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + content


def chunked(body: bytes, size: int) -> bytes:
    head = b"POST /graphql HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n"
    chunks = [body[n : n + size] for n in range(0, len(body), size)]
    return head + b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"


READS: dict[str, tuple[bytes, int]] = {  # a read and the requests in it
    "small GET": (raw("GET"), 1),
    "56 KB upload": (raw("POST", files={"0": ("p.jpg", b"\xff" * 56_000, "image/jpeg")}), 1),
    "10 pipelined POSTs": (b"".join(raw("POST", json={"query": "{ a }"}) for _ in range(10)), 10),
    "chunked 8 KB": (chunked(b'{"query": "{ a }", "pad": "' + b"p" * 8_000 + b'"}', 1024), 1),
}


def timer(protocol_class: type[HttpToolsProtocol], data: bytes, rounds: int) -> Callable[[], float]:
    config = uvicorn.Config(empty_answer, log_level="warning")
    config.load()
    loop = asyncio.new_event_loop()
    state = ServerState()
    protocol = protocol_class(config, state, {}, _loop=loop)
    protocol.connection_made(Sink())

    def run() -> float:
        started = time.process_time()
        for _ in range(rounds):
            protocol.data_received(data)
            while state.tasks or protocol.pipeline:  # the answers, pipelined ones in turn
                loop.run_until_complete(asyncio.sleep(0))
        return time.process_time() - started

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    ours = limited_protocol(ConnectionLimits())
    print(f"{'read':22} {'uvicorn µs/req':>16} {'ours µs/req':>14} {'ratio':>14}")
    for name, (data, requests) in READS.items():
        base, mine = timer(HttpToolsProtocol, data, args.rounds), timer(ours, data, args.rounds)
        figures: dict[str, list[float]] = {"base": [], "ours": []}
        for _ in range(args.runs):
            figures["base"].append(base() / args.rounds / requests * 1e6)
            figures["ours"].append(mine() / args.rounds / requests * 1e6)
        ratios = [o / b for o, b in zip(figures["ours"], figures["base"], strict=True)]
        print(
            f"{name:22} {statistics.median(figures['base']):16.1f} "
            f"{statistics.median(figures['ours']):14.1f} "
            f"{statistics.median(ratios):6.2f}x ({min(ratios):.2f}-{max(ratios):.2f})"
        )


if __name__ == "__main__":
    main()
