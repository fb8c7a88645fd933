"""What every resolver gets in ``info.context``: the services and this request's loaders."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from lookalike.resolvers.loaders import Loaders
from lookalike.services.books.catalogue import Catalogue
from lookalike.services.books.records import BookFields
from lookalike.services.core.api_keys import Caller
from lookalike.services.core.request_usage import Usage
from lookalike.services.embeddings.query_vectors import QueryEmbeddings
from lookalike.services.faces.recognition import FaceService
from lookalike.services.limits.budget import ClientBudget


@dataclass
class Context:
    catalogue: Catalogue
    faces: FaceService
    queries: QueryEmbeddings
    usage: Usage
    caller: Caller
    operation_name: str | None = None  # set once the document is parsed
    budget: ClientBudget | None = None  # what the client may still spend; None: no budget
    # what the query shows of the books at each place, set as the operation starts: by the
    # response keys to the field that fetches them and the field names from there down
    book_selections: Mapping[tuple[tuple[str, ...], tuple[str, ...]], BookFields] | None = None
    loaders: Loaders = field(init=False)

    def __post_init__(self) -> None:
        # Fresh loaders per request: their caches must never serve one user's request
        # from another's, nor outlive a catalogue reload.
        self.loaders = Loaders(self.catalogue, self.faces.store, self.queries)
