"""What an operation will cost the server, in items, from the values it will run with.

The unit is one item returned; the other work is weighed in it by what bench/cost.py
measures (server time per unit, every kind of field kept close to the nested benchmark
query's, on the shipped catalogue and on 20,000 books; the ratios in docs/benchmarks.md).
Each field that does work costs, per parent:

- the items it returns (``k``, ``first``; a ``first: null`` costs the 20 it will return);
- ``SEARCH`` per Redis search it may run: a search and the resolver around it cost about as
  much CPU as ten returned books, so ``withinRadius(first: 0)`` is not free;
- the books a search goes through whatever it returns, which grow with the catalogue (its
  size as the server last read it, ``Catalogue.books``): a range search scores, counts and
  sorts every book it may match (the share of the catalogue its radius can cover,
  ``search_budget.radius_reach``; r of 2 is the whole catalogue), a KNN with a filter (facets,
  or many books to leave out: the liked and disliked of ``recommend``) goes through more of
  the index, and a page of ``books`` sorts the catalogue by id;
- the candidates it searches beyond the items it returns: ``diversity`` and ``maxPerAuthor``
  pick k from the max(50, 5k) nearest (and the cap may search four times that again),
  HYBRID ranks the 50 nearest and the 50 best by BM25, BEST_SCORE searches a list around
  every liked book (``services/books/search/budget.py`` mirrors what the searches ask for) and
  compares every hit with every liked and disliked vector;
- one per filter value it sends (a filter of a hundred long names is parsed by Redis and
  checked by the server every time it runs), one per excluded id, and ``EXAMPLE`` per liked
  or disliked id (its vector read, decoded and used);
- the model: ``MODEL_RUN`` per photo a face field embeds (``FACE_RUN`` more for every face
  of a photo after its first that ``identifyFaces`` may embed), and ``TEXT_MODEL_RUN`` per search
  text and half a unit per character of it (the sentence model's time grows with the text;
  whether the text's embedding is kept from an earlier request is not known beforehand);
  ``upsertBooks`` counts a model run and ``changes.UNITS_PER_CHARACTER`` a character (what
  bench/description_embedding.py measures against a search text) for each description it
  embeds, once the stored books say which are new (an unchanged one is not embedded again),
  before it writes anything, against its own ceiling (``LOOKALIKE_MAX_CHANGE_COST``);
- ``BOOK_WRITE`` per book a catalogue change reads and writes.

Fields under a list field cost that much for every item of it (list sizes multiplied down the
tree), and a few of a book's fields weigh on every book shown (``PAYLOAD``: a description is a
kilobyte). Introspection costs a fixed amount per meta field: the whole schema, or one type.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    GraphQLObjectType,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    VariableValues,
    Visitor,
    get_argument_values,
    get_named_type,
    visit,
)

from lookalike.schema.operations.cache import (
    Fragments,
    ValuesCache,
    directive_variables,
    variables_in,
)
from lookalike.schema.operations.documents import CACHE_ENTRIES, CACHE_TEXT
from lookalike.schema.operations.field_groups import grouped_fields, obeying, sub_selections
from lookalike.services.books.loading.changes import EMBEDDING
from lookalike.services.books.requests import SearchMode
from lookalike.services.books.search.budget import (
    Budget,
    nearest_budget,
    radius_reach,
    recommend_budget,
    search_budget,
)
from lookalike.services.books.search.leave_out import ASK_MORE_UP_TO
from lookalike.services.books.search.recommendations import RecommendStrategy

SEARCH = 10
# What bench/cost.py measured each kind of work to take, in units (docs/benchmarks.md):
RANGE_MATCHES = 32  # books a range search may match, a unit (scored, counted, sorted)
PAGE_SCAN = 64  # books of the catalogue a page of ``books`` sorts by id, a unit
EXAMPLE = 4  # per liked or disliked id: its vector read, decoded and scored with
BEST_SCORED = 64  # candidates times liked and disliked vectors BEST_SCORE compares, a unit
FILTERED_SCAN = 128  # books of the catalogue a filtered KNN goes through, a unit
TEXT_MODEL_RUN = EMBEDDING  # a search text the sentence model embeds (a text new to the server)
BOOK_WRITE = 2  # a book upsertBooks or deleteBooks writes: its digests read, its key written
MODEL_RUN = 5_000
# Each further face identifyFaces may embed (its ResNet run; the photo's decoding and detection
# are in MODEL_RUN): set so that the default maxFaces fits the default cost limit, within the
# 3x rule above (docs/decisions.md, "Every face of a photo").
FACE_RUN = 1_500
SCHEMA_INTROSPECTION = 5_000  # __schema: every type and field
TYPE_INTROSPECTION = 100  # __type: one type


@dataclass(frozen=True, slots=True)
class Work:
    """What one field costs per parent: the items it returns, and the rest of its work."""

    items: int
    extra: int = 0


# A field's work from its arguments and the number of books in the catalogue.
Pricer = Callable[[Mapping[str, Any], int], Work]


def _count(args: Mapping[str, Any], name: str, default: int) -> int:
    value = args.get(name)
    return max(int(value), 0) if value is not None else default


def _filter_values(args: Mapping[str, Any]) -> int:
    given = args.get("filter")
    if given is None:
        return 0
    if isinstance(given, Mapping):
        return len(given.get("genres") or ()) + len(given.get("authors") or ())
    return len(getattr(given, "genres", None) or ()) + len(getattr(given, "authors", None) or ())


def _radius(args: Mapping[str, Any], books: int) -> Work:
    """A range search's work grows with the books it may match (Redis scores, counts and
    sorts each of them, ``first: 0`` or not): ``RANGE_MATCHES`` of them a unit."""
    r = args.get("r")
    reach = radius_reach(float(r) if r is not None else 0.0, books)
    found = _count(args, "first", 10)
    return Work(found, SEARCH + _filter_values(args) + -(-reach // RANGE_MATCHES))


def _ids(args: Mapping[str, Any], name: str) -> int:
    return len(args.get(name) or ())


def _picking(args: Mapping[str, Any]) -> tuple[float, bool]:
    """diversity and whether a cap per author is asked for, as the field will read them."""
    diversity = args.get("diversity")
    return (float(diversity) if diversity else 0.0), args.get("maxPerAuthor") is not None


def _searching(
    items: int, budget: Budget, args: Mapping[str, Any], books: int, left_out: int
) -> Work:
    """``items`` returned, after the searches and candidates of ``budget``, the filter's
    values and the excluded ids. A search with a filter (facets, or more books to leave out
    than are asked for and dropped: ``leave_out``) is RediSearch's filtered KNN, which goes
    through more of the index the larger the catalogue: ``FILTERED_SCAN`` books a unit."""
    extra = SEARCH * budget.searches + max(0, budget.candidates - items)
    if _filter_values(args) or left_out > ASK_MORE_UP_TO:
        extra += budget.searches * -(-books // FILTERED_SCAN)
    return Work(items, extra + _filter_values(args) + _ids(args, "exclude"))


def _similar(args: Mapping[str, Any], books: int) -> Work:
    k = _count(args, "k", 5)
    return _searching(k, nearest_budget(k, *_picking(args)), args, books, _ids(args, "exclude") + 1)


def _text_search(args: Mapping[str, Any], books: int) -> Work:
    k = _count(args, "k", 10)
    mode = args.get("mode")
    budget = search_budget(k, *_picking(args), mode if mode is not None else SearchMode.HYBRID)
    found = _searching(k, budget, args, books, _ids(args, "exclude"))
    text = len(args.get("text") or "")
    return Work(found.items, found.extra + TEXT_MODEL_RUN + text // 2)


def _faces(args: Mapping[str, Any], books: int) -> Work:
    """identifyFaces: up to maxFaces faces, each with k candidates; one photo decoded and
    searched for faces, each face embedded, every face's KNN in one round trip."""
    faces, k = _count(args, "maxFaces", 10), _count(args, "k", 3)
    return Work(faces * (1 + k), MODEL_RUN + max(0, faces - 1) * FACE_RUN + SEARCH)


def _recommend(args: Mapping[str, Any], books: int) -> Work:
    k = _count(args, "k", 10)
    liked, disliked = _ids(args, "liked"), _ids(args, "disliked")
    strategy = args.get("strategy") or RecommendStrategy.AVERAGE_VECTOR
    budget = recommend_budget(k, liked, disliked, strategy, *_picking(args))
    examples = liked + disliked
    found = _searching(k, budget, args, books, examples + _ids(args, "exclude"))
    scored = budget.candidates * examples if strategy is RecommendStrategy.BEST_SCORE else 0
    return Work(found.items, found.extra + EXAMPLE * examples + -(-scored // BEST_SCORED))


# "Type.field" -> its work, from the arguments it will run with. Fields not listed cost nothing
# and pass their parent's multiplier down (edges, node, book of a match...).
# A Work is the same whatever the arguments; a function computes it from them.
FIELD_WORK: dict[str, Work | Pricer] = {
    "Query.book": Work(1),  # a read by key, batched with its siblings
    "Query.books": lambda args, books: Work(
        _count(args, "first", 20), SEARCH + -(-books // PAGE_SCAN)
    ),
    "Query.searchBooks": _text_search,
    "Query.recommend": _recommend,
    "Query.genres": Work(300, 300 * SEARCH),  # a count per genre
    "Query.person": Work(1),
    "Query.people": lambda args, books: Work(_count(args, "first", 20), SEARCH),
    "Book.similar": _similar,
    "Book.withinRadius": _radius,
    "Mutation.identifyFace": lambda args, books: Work(_count(args, "k", 3), MODEL_RUN + SEARCH),
    "Mutation.identifyFaces": _faces,
    "Mutation.verifyFace": Work(1, MODEL_RUN + SEARCH),
    "Mutation.enrollFace": Work(1, MODEL_RUN),
    "Mutation.deletePerson": Work(1, SEARCH),
    # a digest read and a write a book; the descriptions it embeds are counted once known
    # (``changes.embedding_cost``, against LOOKALIKE_MAX_CHANGE_COST)
    "Mutation.upsertBooks": lambda args, books: Work(1, BOOK_WRITE * _ids(args, "books")),
    "Mutation.deleteBooks": lambda args, books: Work(1, BOOK_WRITE * _ids(args, "ids")),
    "Mutation.deleteFace": Work(1, SEARCH),
    "Person.faces": Work(1),  # one read by key a person, batched with the page's others
}
# The names of the fields whose cost their arguments change (whatever their type: a variable
# in such a field's arguments is counted as an input of the cost, which is only ever safe).
ARGUMENT_COSTED = frozenset(
    coordinate.split(".")[1] for coordinate, work in FIELD_WORK.items() if callable(work)
)
# Book fields heavy enough to weigh on every book shown (a description is about a kilobyte).
PAYLOAD = {"Book.description": 5, "Book.editions": 2, "Book.inventory": 2}
META = {"__schema": SCHEMA_INTROSPECTION, "__type": TYPE_INTROSPECTION}


class _Costing:
    """Walks the operation as execution will (fields.py's grouping, ``@skip``/``@include``
    obeyed) with the argument values graphql-core coerced."""

    def __init__(
        self,
        fragments: Mapping[str, FragmentDefinitionNode],
        variables: VariableValues,
        books: int,
    ) -> None:
        self.fragments = fragments
        self.variables = variables
        self.books = books
        self.included = obeying(variables)

    def cost(
        self, selections: list[SelectionSetNode], parent: GraphQLObjectType, multiplier: int
    ) -> int:
        groups = grouped_fields(selections, self.fragments, self.included)
        return sum(self.field_cost(nodes, parent, multiplier) for nodes in groups.values())

    def field_cost(self, nodes: list[FieldNode], parent: GraphQLObjectType, multiplier: int) -> int:
        name = nodes[0].name.value
        definition = parent.fields.get(name)
        if definition is None:  # __typename, and the introspection meta fields
            return multiplier * META.get(name, 0)
        coordinate = f"{parent.name}.{name}"
        total = multiplier * PAYLOAD.get(coordinate, 0)
        below = multiplier
        work_of = FIELD_WORK.get(coordinate)
        if work_of is not None:
            work = (
                work_of
                if isinstance(work_of, Work)
                else work_of(get_argument_values(definition, nodes[0], self.variables), self.books)
            )
            total += multiplier * (work.items + work.extra)
            below = multiplier * work.items
        child = get_named_type(definition.type)
        inner = sub_selections(nodes)
        if inner and isinstance(child, GraphQLObjectType) and below:
            total += self.cost(inner, child, below)
        return total


def operation_cost(
    operation: OperationDefinitionNode,
    root: GraphQLObjectType,
    fragments: Mapping[str, FragmentDefinitionNode],
    variables: VariableValues,
    books: int,
) -> int:
    """The cost of the operation run with these values, on a catalogue of ``books`` books."""
    return _Costing(fragments, variables, books).cost([operation.selection_set], root, 1)


def cost_inputs(operation: OperationDefinitionNode, fragments: Fragments) -> frozenset[str]:
    """The variables the operation's cost can depend on: those of ``@skip``/``@include`` and
    those inside the arguments of fields whose work the arguments change. The others (a
    book's id, a person's) never change it."""
    found: set[str] = set(directive_variables(operation, fragments))

    class Inputs(Visitor):
        def enter_field(self, node: FieldNode, *_: Any) -> None:
            if node.name.value in ARGUMENT_COSTED:
                for argument in node.arguments or ():
                    found.update(variables_in(argument))

    for node in (operation, *fragments.values()):
        visit(node, Inputs())
    return frozenset(found)


class OperationCosts:
    """The cost of an operation for the values of its cost inputs, computed once: walking the
    operation and coercing the arguments again is a twentieth of a single book query's time.
    Kept per operation like the executor's other per-operation work (``ValuesCache``:
    ``size`` operations whose documents hold at most ``budget`` characters, ``per_operation``
    sets of values each). A radius search costs more as the catalogue grows: the costs kept
    are those of one catalogue size, and are let go when the size the server knows changes."""

    def __init__(
        self, size: int = CACHE_ENTRIES, budget: int = CACHE_TEXT, per_operation: int = 64
    ) -> None:
        self.kept: ValuesCache[int] = ValuesCache(cost_inputs, size, budget, per_operation)
        self.books = 0  # the catalogue size the kept costs are for

    def cost(
        self,
        operation: OperationDefinitionNode,
        root: GraphQLObjectType,
        fragments: Fragments,
        variables: VariableValues,
        books: int,
    ) -> int:
        if operation.operation is OperationType.MUTATION:
            # worked out every time: a change's values are its books (a megabyte, a key of
            # the cache each), and mutations are few and their documents small
            return operation_cost(operation, root, fragments, variables, books)
        if books != self.books:
            self.kept.clear()
            self.books = books
        return self.kept.get(
            operation,
            fragments,
            variables.coerced,
            lambda: operation_cost(operation, root, fragments, variables, books),
        )
