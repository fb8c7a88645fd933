"""Search text to vector, with the vectors kept in Redis so a text is embedded once.

The FLOAT32 blobs live in a bounded store (``embedcache:<model>``, at most
LOOKALIKE_SEARCH_CACHE_SIZE texts whatever clients send), keyed by the SHA-256 of the text: one
pipeline looks up any number of texts, and the cache survives restarts and is shared by every
server on the same Redis. RedisVL's EmbeddingsCache was considered: one key per text with a TTL
is unbounded under a stream of new texts, and it stores vectors as JSON text. In front of it,
each process keeps the last few thousand vectors it used, so a text searched again here costs
no round trip at all.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable, Sequence

from lookalike.services.core.errors import BadUserInput, check_text
from lookalike.services.core.request_usage import model_time
from lookalike.services.embeddings.text_model import MODEL_NAME, TextEmbedder
from lookalike.services.redis.bounded_store import BoundedStore, digest
from lookalike.services.redis.connection import Redis
from lookalike.services.redis.replicas import Reads

MAX_TEXT = 2000


def validate_text(text: str) -> None:
    """1 to 2,000 characters with at least one letter or digit (a text of spaces and
    zero-width characters would be embedded, and cached, as noise)."""
    if not any(c.isalnum() for c in text):
        raise BadUserInput("text must hold at least one letter or digit", argument="text")
    if len(text) > MAX_TEXT:
        raise BadUserInput(
            f"text is at most {MAX_TEXT} characters, got {len(text)}", argument="text"
        )
    check_text("text", text, multiline=True)


class QueryEmbeddings:
    def __init__(
        self,
        client: Redis,
        embedder: Callable[[], TextEmbedder],
        capacity: int,
        local_size: int = 4096,
        reads: Reads | None = None,
    ) -> None:
        self.store = BoundedStore(client, f"embedcache:{MODEL_NAME}", capacity, reads=reads)
        self.embedder = embedder
        self.local: OrderedDict[str, bytes] = OrderedDict()
        self.local_size = local_size
        self.texts_embedded = 0  # since start: what the cache could not answer
        self.model_calls = 0  # batches sent to the model

    async def vectors(self, texts: Sequence[str]) -> list[bytes]:
        """One FLOAT32 blob per text: cached ones in one round trip, the rest in one model
        call (in a thread: torch releases the GIL, so other requests keep being served).
        The texts are SearchRequests', checked when the requests were made."""
        found = {t: v for t in texts if (v := self.local.get(t)) is not None}
        unknown = [t for t in dict.fromkeys(texts) if t not in found]
        if unknown:
            cached = await self.store.get_many([digest(t) for t in unknown])
            found.update((t, v) for t, v in zip(unknown, cached, strict=True) if v is not None)
        missing = [t for t in unknown if t not in found]
        if missing:
            self.texts_embedded += len(missing)
            self.model_calls += 1
            with model_time("text"):
                fresh = await asyncio.to_thread(self.embedder().encode, missing)
            found.update((t, v.tobytes()) for t, v in zip(missing, fresh, strict=True))
            await self.store.put_many({digest(t): found[t] for t in missing})
        for text in texts:
            self.local[text] = found[text]
            self.local.move_to_end(text)
        while len(self.local) > self.local_size:
            self.local.popitem(last=False)
        return [found[t] for t in texts]
