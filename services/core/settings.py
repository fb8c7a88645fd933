"""Every setting of lookalike, read once from the environment.

Names are ``LOOKALIKE_<FIELD>`` except ``REDIS_URL``, which keeps the name every Redis tool
and cloud console uses. The README's configuration table lists them all.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "lookalike"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="LOOKALIKE_", extra="ignore", populate_by_name=True, frozen=True
    )

    redis_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("REDIS_URL", "LOOKALIKE_REDIS_URL", "redis_url"),
        description="Redis 8 / Redis Stack server to use; unset starts the embedded one.",
    )
    redis_replicas: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Replicas of the primary (REDIS_URL) that serve searches and reads.",
    )
    replica_max_lag: int = Field(
        default=1024 * 1024,
        ge=0,
        description="Bytes of replication stream a replica may be behind and still serve reads.",
    )
    data_dir: Path = Field(
        default_factory=_default_data_dir,
        description="Where the embedded Redis keeps its AOF files, socket and lock.",
    )
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = Field(
        default=1,
        ge=1,
        le=64,
        description="API processes `lookalike serve` runs on its one port.",
    )
    redis_timeout: float = Field(
        default=2.0,
        gt=0,
        description="Seconds a Redis round trip (a command or a pipeline) may take.",
    )
    redis_max_connections: int = Field(
        default=64,
        ge=1,
        le=10_000,
        description="Connections to Redis (to each node of a cluster, to each replica); "
        "with all in use, a command waits for one up to LOOKALIKE_REDIS_TIMEOUT.",
    )
    index_name: str = "books"
    key_prefix: str = "book"
    vector_type: Literal["float16", "float32"] = Field(
        default="float16",
        description="How book vectors are stored and indexed (float16: half the memory).",
    )
    hnsw_m: int = Field(
        # 32, not 16: at a million books it finds as many true neighbours at EF_RUNTIME 250
        # as 16 did at 650, for less time a search (docs/decisions.md, "HNSW M 32")
        default=32,
        ge=2,
        le=512,
        description="HNSW graph degree: links a book keeps to its neighbours on each layer.",
    )
    hnsw_ef_construction: int = Field(default=200, ge=1, le=4096)
    hnsw_ef_runtime: int | None = Field(
        default=None,
        ge=1,
        le=4096,
        description="EF_RUNTIME of a KNN search; unset: LOOKALIKE_HNSW_EF_CURVE chooses it "
        "from the books the index holds per shard.",
    )
    hnsw_ef_curve: Annotated[tuple[tuple[int, int], ...], NoDecode] = Field(
        # At each size, the smallest EF_RUNTIME whose recall@10 reached 0.95 with headroom
        # on bench/scale.py's catalogue: docs/decisions.md, "EF_RUNTIME from the index's size".
        default=((100_000, 100), (300_000, 100), (1_000_000, 250)),
        min_length=1,
        description="books per shard:EF_RUNTIME points, comma-separated; between and past "
        "them EF_RUNTIME follows the log of the size.",
    )
    hnsw_ef_candidates: int = Field(
        default=400,
        ge=1,
        le=10_000,
        description="EF_RUNTIME (at least, and 4x the hits asked) of the searches whose "
        "candidates lookalike ranks itself: recommend, diversity and author-cap pools, HYBRID.",
    )
    hnsw_epsilon: float = Field(
        default=0.3, gt=0, le=10, description="How far past r a range search explores."
    )
    search_cache_size: int = Field(
        default=20_000, ge=64, le=10_000_000, description="Search texts whose vectors Redis keeps."
    )
    catalogue_autoload: bool = Field(
        default=True, description="Load the shipped catalogue when the index is empty."
    )
    face_layout: Literal["hash", "json"] = Field(
        default="hash",
        validation_alias=AliasChoices("FACE_LAYOUT", "LOOKALIKE_FACE_LAYOUT", "face_layout"),
        description="How enrolled faces are stored: one Hash per face, or one JSON per person.",
    )
    face_threshold: float = Field(
        default=0.05,
        gt=0,
        le=2,
        description="Nearest-face cosine distance below which a face is identified.",
    )
    face_workers: int = Field(
        default=1,
        ge=1,
        le=16,
        description="Face model processes of the whole server, shared out among its API "
        "processes (each gets at least one).",
    )
    face_max_faces: int = Field(
        default=20,
        ge=1,
        le=100,
        description="The largest maxFaces identifyFaces takes (faces embedded from one photo).",
    )
    text_model_threads: int = Field(
        default=1, ge=1, le=64, description="CPU threads the text model runs on."
    )
    ready_waits_for_models: bool = Field(
        default=False,
        description="/readyz answers 503 until the text model (loaded in the background at "
        "start) is ready.",
    )
    max_upload_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024, description="JSON request bodies.")
    max_image_pixels: int = Field(
        default=50_000_000, ge=10_000, description="Pixels a photo's header may declare."
    )
    max_decoded_pixels: int = Field(
        default=12_600_000,
        ge=10_000,
        description="Pixels decoded at full resolution (formats other than JPEG; 16-bit count "
        "double) and the finest a JPEG is decoded at.",
    )
    max_query_cost: int = Field(
        default=20_000, ge=1, description="Work a query may cost, in returned items."
    )
    max_change_cost: int = Field(
        default=2_000_000,
        ge=1,
        description="What the descriptions one upsertBooks call embeds may cost: about 500 "
        "descriptions of the shipped catalogue's average length.",
    )
    max_query_depth: int = Field(default=8, ge=1, description="Nesting levels of a query.")
    max_query_aliases: int = Field(default=30, ge=1, description="Aliased fields a query may use.")
    max_query_fields: int = Field(
        default=500, ge=1, description="Field selections of a query, fragments expanded."
    )
    max_selection_fields: int = Field(
        default=100, ge=1, description="Fields one selection set may hold, repeats included."
    )
    fast_path: bool = Field(
        default=True,
        description="Plans and direct resolver calls complete query answers; false: "
        "graphql-core's own execution for everything (to compare, or bisect).",
    )
    max_query_tokens: int = Field(default=2000, ge=10, description="Tokens a document may hold.")
    max_query_length: int = Field(
        default=64 * 1024, ge=100, description="Characters a document may hold."
    )
    max_introspection_depth: int = Field(
        default=20, ge=1, description="Nesting of an introspection query (GraphiQL's is 15)."
    )
    persisted_queries_size: int = Field(
        default=2000, ge=64, description="Documents the persisted-query store keeps."
    )
    trusted_documents: Path | None = Field(
        default=None,
        description="A manifest of the app's operations (Apollo's persisted query manifest or "
        "GraphQL Codegen's persisted-documents.json): without a full key, only these run.",
    )
    cost_per_minute: int | None = Field(
        default=None,
        ge=1,
        description="Query cost each client (its API key, else its address) may spend a "
        "minute, counted in Redis; unset: no budget.",
    )
    full_key_cost_per_minute: int | None = Field(
        default=None,
        ge=0,
        description="The budget of each full API key (LOOKALIKE_API_KEYS); unset: "
        "LOOKALIKE_COST_PER_MINUTE; 0: none.",
    )
    request_timeout: float = Field(
        default=30.0, gt=0, le=3600, description="Seconds a request may take before 504."
    )
    keep_alive_timeout: int = Field(
        default=5, ge=1, le=3600, description="Seconds an idle keep-alive connection stays."
    )
    header_timeout: float = Field(
        default=10.0, gt=0, le=3600, description="Seconds a request's headers may take to arrive."
    )
    max_header_bytes: int = Field(
        default=32 * 1024, ge=1024, description="Request line and headers, together."
    )
    body_timeout: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="Seconds a request body may take to arrive, and an answer to be read.",
    )
    max_connections: int = Field(default=1000, ge=1, description="Open connections at once.")
    max_connections_per_client: int = Field(
        default=128, ge=0, description="Open connections from one address (0: no bound)."
    )
    graphiql: bool = True
    introspection: bool = True
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Browser origins allowed to call the API."
    )
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list, description="Keys accepted in 'Authorization: Bearer <key>'."
    )
    identify_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="Keys that may identify and verify faces, and change nothing else.",
    )
    require_key_for_queries: bool = False
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @property
    def process_face_workers(self) -> int:
        """This API process's share of the face workers: each of ``workers`` processes needs
        one to answer a photo, and more than the share would multiply the memory and cores
        the setting was sized for (docs/decisions.md, "Workers")."""
        return max(1, -(-self.face_workers // self.workers))

    @field_validator("cors_origins", "api_keys", "identify_keys", "redis_replicas", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        """Lists come from the environment as ``a,b,c`` (blank entries ignored)."""
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("hnsw_ef_curve", mode="before")
    @classmethod
    def _curve_points(cls, value: Any) -> Any:
        """``100000:100,300000:150`` from the environment: (books, EF_RUNTIME) pairs."""
        if isinstance(value, str):
            try:
                pairs = [item.split(":") for item in value.split(",") if item.strip()]
                return tuple((int(books), int(ef)) for books, ef in pairs)
            except ValueError:
                raise ValueError(
                    "expected books:EF_RUNTIME pairs, e.g. 100000:100,300000:150"
                ) from None
        return value

    @field_validator("hnsw_ef_curve")
    @classmethod
    def _curve_rises(cls, value: tuple[tuple[int, int], ...]) -> tuple[tuple[int, int], ...]:
        sizes, efs = [books for books, _ in value], [ef for _, ef in value]
        if sizes != sorted(set(sizes)) or sizes[0] < 1:
            raise ValueError("the curve's book counts must be positive and increasing")
        if efs != sorted(efs) or efs[0] < 1 or efs[-1] > 4096:
            raise ValueError("the curve's EF_RUNTIME values must rise from 1 to at most 4096")
        return value

    @model_validator(mode="after")
    def _keys_for_queries_need_keys(self) -> Settings:
        if self.require_key_for_queries and not (self.api_keys or self.identify_keys):
            raise ValueError(
                "LOOKALIKE_REQUIRE_KEY_FOR_QUERIES is on but LOOKALIKE_API_KEYS and "
                "LOOKALIKE_IDENTIFY_KEYS are empty: no request could be answered"
            )
        return self


@cache
def get_settings() -> Settings:
    """The process-wide settings; tests build their own ``Settings`` instead."""
    return Settings()
