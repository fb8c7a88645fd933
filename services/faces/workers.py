"""The face model's worker processes: one photo at a time each, and never held past a deadline.

The model holds the GIL (measured: a Python thread beside it ran at a fraction of its speed;
docs/decisions.md), so it runs in worker processes, spawned (no inherited sockets or event
loop), each loading the model once. A photo is sent to an idle worker over a pipe and the
answer awaited without a thread: the event loop watches the pipe.

What a process pool from the standard library cannot do, this one does:

- **A request that is cancelled (its deadline passed, the client left) kills the worker
  running its photo** and starts another: C code cannot be interrupted, and a worker left
  running would hold the next photos behind a photo nobody waits for. Requests still waiting
  for a worker simply leave the queue.
- **A worker that dies** (SIGKILL, out of memory) fails only the photo it was reading, with
  SERVICE_UNAVAILABLE; it is replaced at once, and an idle worker found dead is replaced
  before a photo is given to it.
- **Closing never blocks the event loop:** workers are killed, and reaped in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import multiprocessing
import os
import signal
import struct
import traceback
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from lookalike.services.core import metrics
from lookalike.services.core.errors import LookalikeError, ServiceUnavailable
from lookalike.services.core.request_usage import model_time
from lookalike.services.faces.images import ImageLimits, Photo
from lookalike.services.faces.model import LARGEST, FaceEmbedding, FaceModel, FacePick

log = logging.getLogger("lookalike.faces")
START_TIMEOUT = 120.0  # seconds a new worker may take to load the model
RESPAWN_DELAYS = (0.0, 1.0, 5.0)  # then every 30 s, while a worker will not start
RECEIVED = ("received", None)  # a worker has taken the photo sent to it off the pipe
PICK = struct.Struct(">HH??")  # before a photo's bytes: the FacePick's four fields, in order


def _serve(photos: Connection, replies: Connection, limits: ImageLimits) -> None:
    """A worker: load the model, then embed each photo sent, until the pipe closes. It says
    when it has taken a photo (``RECEIVED``), so that the server can tell a worker that died
    before reading a photo (the photo is not to blame: another worker tries it) from one that
    died reading it. Each reply says how many pixels were decoded (none for a photo refused
    from its header)."""
    # Ctrl-C reaches the whole process group: the server decides when workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        model = FaceModel()
    except Exception as exc:  # a missing weight file: say so, then stop
        replies.send(("failed", str(exc)))
        return
    replies.send(("ready", os.getpid()))
    while True:
        try:
            message = photos.recv_bytes()
            replies.send(RECEIVED)
        except (EOFError, OSError):
            return  # the server is gone
        pick = FacePick(*PICK.unpack_from(message))
        photo = None
        try:
            photo = Photo(message[PICK.size :], limits)
            reply: tuple[str, Any] = ("ok", model.embed(photo, pick))
        except LookalikeError as exc:  # the photo's fault: NO_FACE, INVALID_IMAGE, ...
            reply = ("error", exc)
        except Exception:
            reply = ("bug", traceback.format_exc())
        replies.send((*reply, photo.decoded_pixels if photo is not None else 0))


@dataclass(eq=False)
class _Worker:
    """A worker process and its two pipes. One way each: the event loop watches the replies
    pipe, which makes it non-blocking, while a thread writes photos to the other one.

    Each pipe is closed only when nobody uses it any more, or its number could be reused by
    the next worker's pipe while still in use: the photos pipe once the writing thread is
    done, the replies pipe by the event loop when it no longer watches it.
    """

    process: BaseProcess
    photos: Connection  # we write
    replies: Connection  # we read
    sending: Future[None] | None = None  # the photo being written to it, from a thread

    def kill(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.process.kill()

    def reap(self) -> None:
        """Wait for the killed process and the writing thread, close the photos pipe
        (blocking: run in a thread)."""
        self.process.join(timeout=10)
        if self.sending is not None:
            with contextlib.suppress(Exception):
                self.sending.result(timeout=10)
        self.photos.close()


async def _receive(conn: Connection) -> Any:
    """The next message on the pipe, waiting in the event loop rather than in a thread.

    EOFError when the other end is gone. Once the pipe is readable the message is on its way
    (a worker writes each at once), so the read is made blocking again: watching the pipe
    made it non-blocking, and a long message could arrive in two parts.
    """
    loop = asyncio.get_running_loop()
    readable: asyncio.Future[None] = loop.create_future()
    fd = conn.fileno()

    def wake() -> None:
        if not readable.done():
            readable.set_result(None)

    loop.add_reader(fd, wake)
    try:
        await readable
    finally:
        loop.remove_reader(fd)
    os.set_blocking(fd, True)
    return conn.recv()


class FaceWorkers:
    """``workers`` processes, each embedding one photo at a time."""

    def __init__(self, workers: int, limits: ImageLimits) -> None:
        self.size = workers
        self.limits = limits
        self._context = multiprocessing.get_context("spawn")
        self._idle: asyncio.Queue[_Worker] = asyncio.Queue()
        self._all: set[_Worker] = set()
        self._starting: set[asyncio.Task[None]] = set()
        # Photos are written to a worker from a thread: a worker that stopped reading (hung,
        # killed mid-photo) must block a thread of its own, never the event loop.
        self._writers = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="face-send")
        self._closed = False

    async def start(self) -> None:
        """Start every worker and wait until each has loaded the model."""
        try:
            for worker in await asyncio.gather(*(self._spawn() for _ in range(self.size))):
                self._idle.put_nowait(worker)
        except BaseException:
            await self.close()
            raise

    def pids(self) -> list[int]:
        """The worker processes' ids (for operators and fault-injection tests)."""
        return sorted(w.process.pid for w in self._all if w.process.pid is not None)

    async def embed(self, data: bytes, pick: FacePick = LARGEST) -> FaceEmbedding:
        """The picked faces of the photo, all from one worker call."""
        message = PICK.pack(pick.first, pick.count, pick.every, pick.enrolling) + data
        if self._closed:
            raise ServiceUnavailable("the face model is shutting down")
        for attempt in (1, 2):
            worker = await self._idle_worker()
            try:
                with model_time("face"):
                    worker.sending = self._writers.submit(worker.photos.send_bytes, message)
                    await asyncio.wrap_future(worker.sending)
                    try:
                        received = await _receive(worker.replies)
                    except EOFError:  # gone before it took the photo
                        raise OSError("the face worker stopped before it read the photo") from None
                    if tuple(received) != RECEIVED:
                        raise ServiceUnavailable("the face model worker answered out of turn")
                    reply = await _receive(worker.replies)
            except OSError:
                # It had died before reading the photo (SIGKILL, out of memory while idle;
                # the photo may even fit in the pipe's buffer of a worker already dead): the
                # photo is not to blame, so another worker may try it, once.
                self._replace(worker)
                if self._closed:
                    raise ServiceUnavailable("the face model is shutting down") from None
                if attempt == 2:
                    raise ServiceUnavailable("the face model workers keep stopping") from None
                continue
            except EOFError:
                self._replace(worker)  # it died while reading this very photo
                raise ServiceUnavailable(
                    "the face model worker stopped while reading this photo; try again"
                ) from None
            except BaseException:  # cancelled: the deadline passed or the client left
                self._replace(worker)
                raise
            worker.sending = None
            self._idle.put_nowait(worker)
            return _unpack(reply)
        raise AssertionError("unreachable")

    async def _idle_worker(self) -> _Worker:
        while True:
            worker = await self._idle.get()
            if worker.process.is_alive():
                return worker
            log.warning("a face worker died while idle; starting another")
            self._replace(worker)

    def _replace(self, worker: _Worker) -> None:
        """Kill a worker (its photo is abandoned) and start another in the background."""
        self._retire(worker)
        if not self._closed:
            task = asyncio.get_running_loop().create_task(self._respawn())
            self._starting.add(task)
            task.add_done_callback(self._starting.discard)

    async def _respawn(self) -> None:
        for delay in itertools.chain(RESPAWN_DELAYS, itertools.repeat(30.0)):
            await asyncio.sleep(delay)
            try:
                self._idle.put_nowait(await self._spawn())
                return
            except (ServiceUnavailable, OSError, EOFError, TimeoutError) as exc:
                if self._closed:
                    return
                log.error("a face worker did not start (%d running): %s", len(self._all), exc)

    async def _spawn(self) -> _Worker:
        photos_in, photos_out = self._context.Pipe(duplex=False)
        replies_in, replies_out = self._context.Pipe(duplex=False)
        process = self._context.Process(
            target=_serve,
            args=(photos_in, replies_out, self.limits),
            name="lookalike-face",
            daemon=True,
        )
        process.start()
        photos_in.close()  # the worker's ends: closed here, so its death reads as EOF
        replies_out.close()
        worker = _Worker(process, photos_out, replies_in)
        self._all.add(worker)
        try:
            async with asyncio.timeout(START_TIMEOUT):
                kind, detail = await _receive(replies_in)
        except BaseException:
            self._retire(worker)
            raise
        if kind != "ready":
            self._retire(worker)
            raise ServiceUnavailable(f"the face model could not be loaded: {detail}")
        if self._closed:  # closed while this one was starting
            self._retire(worker)
            raise ServiceUnavailable("the face model is shutting down")
        return worker

    def _retire(self, worker: _Worker) -> None:
        """Kill a worker nobody waits on any more and close its pipes; it is collected in a
        thread (joining may wait)."""
        worker.kill()
        self._all.discard(worker)
        worker.replies.close()
        asyncio.get_running_loop().run_in_executor(None, worker.reap)

    async def close(self) -> None:
        """Kill every worker; the event loop never waits for them.

        Idle workers are retired here. A busy or starting one is only killed: the request or
        start-up waiting on it reads the end of its pipe, fails, and retires it (closing its
        pipe under a waiting reader would leave that reader waiting for ever).
        """
        self._closed = True
        for task in list(self._starting):
            task.cancel()
        processes = [w.process for w in self._all]
        while not self._idle.empty():
            self._retire(self._idle.get_nowait())
        for worker in list(self._all):
            worker.kill()
        await asyncio.get_running_loop().run_in_executor(None, _join, processes)
        self._writers.shutdown(wait=False, cancel_futures=True)


def _join(processes: list[BaseProcess]) -> None:
    for process in processes:
        process.join(timeout=10)


def _unpack(reply: tuple[str, Any, int]) -> FaceEmbedding:
    kind, value, decoded_pixels = reply
    metrics.FACE_DECODED_PIXELS.inc(decoded_pixels)
    if kind == "ok":
        embedding: FaceEmbedding = value
        return embedding
    if kind == "error":
        raise value
    raise RuntimeError(f"the face model failed:\n{value}")
