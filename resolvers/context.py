"""What every resolver gets in ``info.context``: the services and this request's loaders."""

from __future__ import annotations

from dataclasses import dataclass, field

from lookalike.resolvers.loaders import Loaders
from lookalike.services.api_keys import Caller
from lookalike.services.catalogue import Catalogue
from lookalike.services.faces import FaceService
from lookalike.services.query_embeddings import QueryEmbeddings
from lookalike.services.request_usage import Usage


@dataclass
class Context:
    catalogue: Catalogue
    faces: FaceService
    queries: QueryEmbeddings
    usage: Usage
    caller: Caller
    operation_name: str | None = None  # set once the document is parsed
    loaders: Loaders = field(init=False)

    def __post_init__(self) -> None:
        # Fresh loaders per request: their caches must never serve one user's request
        # from another's, nor outlive a catalogue reload.
        self.loaders = Loaders(self.catalogue, self.faces.store, self.queries)
