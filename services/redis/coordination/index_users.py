"""Which live lookalike servers use an index, and with which settings.

Servers of one deployment share a Redis, and a rolling deploy runs old and new side by side.
A server whose settings shape an index differently (the vector type, the HNSW graph, the face
layout) must not convert it under the others, whose every search would then fail. So each
server announces, for every index it serves from, that it is alive and what it needs: a
member of the sorted set ``index-users:<store>`` (the member names the process, its
definition and its settings; the score is when the announcement expires). The app renews it
every ``TTL / 3`` seconds and withdraws it when it stops; a killed server's announcement
expires by itself after ``TTL`` seconds. Conversion is allowed when nobody else is announced
(``refuse_while_used``); ``lookalike books convert --force`` converts anyway.

Expiries are the announcing host's clock: hosts of one deployment agree to far better than
the TTL. Command-line runs (``lookalike books load``) do not announce: they are short, and
they refuse a conversion like any other process.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError

from lookalike.services.core.errors import ServiceUnavailable
from lookalike.services.redis.connection import UNREACHABLE, Redis, redis_errors
from lookalike.services.redis.coordination.lock import renewed

log = logging.getLogger(__name__)

TTL = 15.0  # seconds an announcement lasts unless renewed
# Which process this is: in-process apps (the tests' TestClient apps) share it, so a process
# never counts itself as another user of an index.
PROCESS_ID = uuid.uuid4().hex[:12]


class IndexInUse(ServiceUnavailable):
    """The index would have to be converted while other live processes use it."""


@dataclass(frozen=True, slots=True)
class IndexUse:
    """What one process needs of one store (an index, or the faces with their layout)."""

    store: str  # the book index's name, or ``<namespace>faces``
    definition: str  # the fingerprint of the definition it needs
    settings: str  # the settings that shape it, as an operator sets them


@dataclass(frozen=True, slots=True)
class User:
    host: str
    pid: int
    definition: str
    settings: str

    def __str__(self) -> str:
        return f"{self.host}:{self.pid} with {self.settings}"


def registry_key(store: str) -> str:
    return f"index-users:{store}"


@contextlib.asynccontextmanager
async def announced(client: Redis, uses: Sequence[IndexUse]) -> AsyncIterator[None]:
    """Announce these uses for the length of the block, renewed in the background."""
    app = uuid.uuid4().hex[:8]
    members = {
        registry_key(use.store): json.dumps(
            {
                "process": PROCESS_ID,
                "app": app,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "definition": use.definition,
                "settings": use.settings,
            },
            sort_keys=True,
        )
        for use in uses
    }
    async with redis_errors():
        await _announce(client, members)
    try:
        async with renewed(lambda: _announce(client, members), TTL / 3, "this announcement"):
            yield
    finally:
        # Redis away, or refusing commands: the announcement expires by itself
        with contextlib.suppress(RedisError, *UNREACHABLE):
            async with client.pipeline(transaction=False) as pipe:
                for key, member in members.items():
                    pipe.zrem(key, member)
                await pipe.execute()


async def _announce(client: Redis, members: dict[str, str]) -> None:
    now = time.time()
    async with client.pipeline(transaction=False) as pipe:
        for key, member in members.items():
            pipe.zadd(key, {member: now + TTL})
            pipe.zremrangebyscore(key, "-inf", now)  # those that died without withdrawing
            pipe.pexpire(key, int(TTL * 2000))  # the set itself goes when nobody renews
        await pipe.execute()


async def other_users(client: Redis, store: str) -> list[User]:
    """The live processes other than this one that announce a use of ``store``."""
    async with redis_errors():
        found = await client.zrangebyscore(registry_key(store), time.time(), "+inf")
    users = []
    for raw in found:
        member: dict[str, Any] = json.loads(raw if isinstance(raw, (bytes, str)) else "{}")
        if member.get("process") != PROCESS_ID:
            users.append(
                User(
                    str(member.get("host")),
                    int(member.get("pid", 0)),
                    str(member.get("definition")),
                    str(member.get("settings")),
                )
            )
    return users


async def refuse_while_used(
    client: Redis, store: str, *, what: str, settings: str, convert: str, force: bool
) -> None:
    """Raise IndexInUse when another live process uses ``store`` (``what``, for the message)
    and a conversion to ``settings`` is not forced (``convert``: how to do it instead)."""
    users = await other_users(client, store)
    if not users:
        return
    listed = "; ".join(sorted({str(user) for user in users}))
    if force:
        log.warning(
            "converting %s under %d live processes, which stop being ready: %s",
            what,
            len(users),
            listed,
        )
        return
    raise IndexInUse(
        f"{what} does not match this process's settings ({settings}) and {len(users)} other "
        f"live lookalike process(es) use it ({listed}): start with their settings, or "
        f"{convert}"
    )
