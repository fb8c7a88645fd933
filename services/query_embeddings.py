"""Search text to vector, with the vectors kept in Redis so a text is embedded once.

Keys are ``embedcache:<model>:<sha256 of the text>`` holding the FLOAT32 blob, with a TTL that
every hit renews (GETEX): one pipeline looks up any number of texts, and the cache survives
restarts and is shared by every server on the same Redis. RedisVL's EmbeddingsCache was
considered: it renews each hit's TTL with a separate round trip and stores vectors as JSON text.
In front of it, each process keeps the last few thousand vectors it used, so a text searched
again here costs no round trip at all.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import OrderedDict
from collections.abc import Callable, Sequence

from lookalike.services.errors import BadUserInput
from lookalike.services.redis_connection import Redis, redis_errors
from lookalike.services.request_usage import model_time
from lookalike.services.text_embedding import MODEL_NAME, TextEmbedder

MAX_TEXT = 2000


def validate_text(text: str) -> None:
    if not text.strip():
        raise BadUserInput("text must not be empty", argument="text")
    if len(text) > MAX_TEXT:
        raise BadUserInput(
            f"text is at most {MAX_TEXT} characters, got {len(text)}", argument="text"
        )


class QueryEmbeddings:
    def __init__(
        self, client: Redis, embedder: Callable[[], TextEmbedder], ttl: int, local_size: int = 4096
    ) -> None:
        self.redis = client
        self.embedder = embedder
        self.ttl = ttl
        self.local: OrderedDict[str, bytes] = OrderedDict()
        self.local_size = local_size
        self.texts_embedded = 0  # since start: what the cache could not answer
        self.model_calls = 0  # batches sent to the model

    def key(self, text: str) -> str:
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        return f"embedcache:{MODEL_NAME}:{digest}"

    async def vectors(self, texts: Sequence[str]) -> list[bytes]:
        """One FLOAT32 blob per text: cached ones in one round trip, the rest in one model
        call (in a thread: torch releases the GIL, so other requests keep being served)."""
        for text in texts:
            validate_text(text)
        found = {t: v for t in texts if (v := self.local.get(t)) is not None}
        unknown = [t for t in dict.fromkeys(texts) if t not in found]
        if unknown:
            async with redis_errors(), self.redis.pipeline(transaction=False) as pipe:
                for text in unknown:
                    pipe.getex(self.key(text), ex=self.ttl)
                cached = await pipe.execute()
            found.update((t, v) for t, v in zip(unknown, cached, strict=True) if v is not None)
        missing = [t for t in unknown if t not in found]
        if missing:
            self.texts_embedded += len(missing)
            self.model_calls += 1
            with model_time("text"):
                fresh = await asyncio.to_thread(self.embedder().encode, missing)
            async with redis_errors(), self.redis.pipeline(transaction=False) as pipe:
                for text, vector in zip(missing, fresh, strict=True):
                    found[text] = vector.tobytes()
                    pipe.set(self.key(text), found[text], ex=self.ttl)
                await pipe.execute()
        for text in texts:
            self.local[text] = found[text]
            self.local.move_to_end(text)
        while len(self.local) > self.local_size:
            self.local.popitem(last=False)
        return [found[t] for t in texts]
