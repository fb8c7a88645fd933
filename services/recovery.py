"""Bring a Redis that came back empty into shape again, while the server runs.

A Redis restarted without its data (no persistence, a new instance behind the same URL, a
FLUSHALL) has no indexes: every vector query would fail until the API restarted. The server
checks every few seconds; when the book index is gone it creates the indexes again and, with
autoload on, reloads the shipped catalogue (about a second, no model). Enrolled people are not
in the shipped data: they must be enrolled again, and the log says so.
"""

from __future__ import annotations

import asyncio
import logging

from redis.exceptions import RedisError

from lookalike.services.books.catalogue import Catalogue
from lookalike.services.books.loading.loader import autoload_unfinished, prepare_catalogue
from lookalike.services.core.errors import ServiceUnavailable
from lookalike.services.faces.store import FaceStore
from lookalike.services.redis.connection import UNREACHABLE

log = logging.getLogger("lookalike.recovery")


async def restore_if_empty(catalogue: Catalogue, faces: FaceStore, *, autoload: bool) -> bool:
    """Recreate what is missing; True when something was. Redis away: nothing to do yet."""
    try:
        if (await catalogue.current_status()).exists:
            return False
        log.warning("the book index is gone (Redis restarted empty?): creating it again")
        loaded = await prepare_catalogue(catalogue, autoload=autoload)
        await faces.open()
    except (ServiceUnavailable, *UNREACHABLE):
        return False
    log.warning(
        "indexes restored; enrolled people, if there were any, must be enrolled again",
        extra={"catalogue": str(loaded) if loaded else "not loaded (autoload off)"},
    )
    return True


async def finish_autoload(catalogue: Catalogue, *, autoload: bool) -> bool:
    """Finish a load of the shipped catalogue that another process began and did not end (it
    was killed half-way); True when this process did. One at a time: the load's lock."""
    try:
        if not autoload or catalogue.loading or not await autoload_unfinished(catalogue):
            return False
        loaded = await prepare_catalogue(catalogue, autoload=autoload)
    except (ServiceUnavailable, *UNREACHABLE):
        return False
    if loaded is not None:
        log.warning("finished a catalogue load another process left half-way",
                    extra={"catalogue": str(loaded)})  # fmt: skip
    return loaded is not None


async def changed_under(catalogue: Catalogue, faces: FaceStore) -> str | None:
    """Why this process cannot serve from the indexes any more (another process converted
    one for other settings: ``DefinitionWatch``), or None. Redis away: None, nothing known."""
    try:
        return await catalogue.watch.refresh() or await faces.watch.refresh()
    except (ServiceUnavailable, *UNREACHABLE):
        return None


async def watch(catalogue: Catalogue, faces: FaceStore, *, autoload: bool, every: float) -> None:
    """For the life of the server: notice an index converted under it, else run
    ``restore_if_empty`` and ``finish_autoload``. An index converted for other settings is
    never restored to this process's: that would undo the conversion under the others."""
    while True:
        await asyncio.sleep(every)
        try:
            if await changed_under(catalogue, faces) is not None:
                continue
            if not await restore_if_empty(catalogue, faces, autoload=autoload):
                await finish_autoload(catalogue, autoload=autoload)
        except (RedisError, ServiceUnavailable, *UNREACHABLE) as exc:  # a full Redis, say
            log.warning("could not check the indexes (trying again in %g s): %s", every, exc)
