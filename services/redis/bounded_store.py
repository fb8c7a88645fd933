"""A key-value store in Redis that never holds more than a fixed number of entries.

Clients choose what goes into the search-text cache and the persisted-query store: one client
sending a new text every few milliseconds would otherwise grow Redis without bound (a key per
entry with a TTL only slows that down). Entries live in a fixed set of hashes ("buckets"), each
capped at ``capacity / buckets`` fields; a write into a full bucket removes a random other
entry of it. The write and the eviction are one Lua script on one key, so they are atomic, work
on every Redis (whatever its ``maxmemory-policy``) and stay within one hash slot of a cluster;
reads are plain HGETs, which a read replica can answer.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

from lookalike.services.redis.connection import Redis, redis_errors
from lookalike.services.redis.replicas import Reads

_PUT = """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
local size = redis.call('HLEN', KEYS[1])
local cap = tonumber(ARGV[3])
while size > cap do
  for _, field in ipairs(redis.call('HRANDFIELD', KEYS[1], 2)) do
    if field ~= ARGV[1] and size > cap then
      redis.call('HDEL', KEYS[1], field)
      size = size - 1
    end
  end
end
return size
"""


def digest(text: str | bytes) -> str:
    data = text.encode("utf-8") if isinstance(text, str) else text
    return hashlib.sha256(data).hexdigest()


class BoundedStore:
    def __init__(
        self,
        client: Redis,
        namespace: str,
        capacity: int,
        buckets: int = 64,
        reads: Reads | None = None,
    ) -> None:
        self.redis = client
        self.reads = reads or Reads(client)  # lookups may go to a replica
        self.namespace = namespace
        self.buckets = max(1, min(buckets, capacity))
        self.per_bucket = max(1, capacity // self.buckets)

    @property
    def capacity(self) -> int:
        return self.buckets * self.per_bucket

    def bucket(self, key: str) -> str:
        """The hash holding ``key`` (a hex digest: its first bytes pick the bucket)."""
        return f"{self.namespace}:{int(key[:8], 16) % self.buckets}"

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []

        async def read(client: Redis) -> list[bytes | None]:
            async with client.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.hget(self.bucket(key), key)
                return list(await pipe.execute())

        async with redis_errors():
            return await self.reads.run(read)

    async def put_many(self, entries: Mapping[str, bytes]) -> None:
        if not entries:
            return
        async with redis_errors(), self.redis.pipeline(transaction=False) as pipe:
            for key, value in entries.items():
                # EVAL with the script itself: on a cluster each shard would need the script
                # loaded for EVALSHA, and the pipeline cannot load it there first
                pipe.execute_command("EVAL", _PUT, 1, self.bucket(key), key, value, self.per_bucket)
            await pipe.execute()

    async def size(self) -> int:
        """Entries held now (one HLEN per bucket, in one round trip)."""
        async with redis_errors(), self.redis.pipeline(transaction=False) as pipe:
            for n in range(self.buckets):
                pipe.hlen(f"{self.namespace}:{n}")
            return sum(await pipe.execute())
