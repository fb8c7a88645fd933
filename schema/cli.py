"""The ``lookalike`` command: serve the API, load and query the catalogue, enrol faces.

It drives every layer (it serves the app, exports the schema, loads, evaluates), so it sits
above them beside the app factory, and no layer imports it.

Exit codes: 0 done, 1 the input was refused (bad argument, unknown book, bad catalogue file),
2 usage error (from the argument parser), 3 Redis unavailable or unfit.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from lookalike.services.books.records import BookFields
from lookalike.services.core.errors import LookalikeError, ServiceUnavailable
from lookalike.services.core.settings import Settings, get_settings

T = TypeVar("T")

# What the tables show of a book (and its vector, for the book whose neighbours are asked)
TABLE_FIELDS = BookFields(frozenset({"title", "author"}), vector=True)

app = typer.Typer(
    help="lookalike: similar books and enrolled faces, by Redis vector search.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
books_app = typer.Typer(help="Load and query the book catalogue.", no_args_is_help=True)
app.add_typer(books_app, name="books")
faces_app = typer.Typer(
    help="Enrol people from photos; evaluate the face model.", no_args_is_help=True
)
app.add_typer(faces_app, name="faces")

out = Console(soft_wrap=True)  # one summary line stays one line for scripts
err = Console(stderr=True, soft_wrap=True)


def _progress() -> Progress:
    """The command's one progress display, on a terminal; none when stderr is a file or pipe."""
    return Progress(console=err, transient=True, disable=not err.is_terminal)


def _setting_default(name: str, env: str) -> str:
    """What --help shows for an option that falls back to a setting."""
    return f"{env}, else {Settings.model_fields[name].default}"


def _run(work: Callable[[], Awaitable[T]]) -> T:
    """Run async work; a refused input or an absent Redis is one line on stderr, no traceback."""
    try:
        return asyncio.run(work())  # type: ignore[arg-type]
    except ServiceUnavailable as exc:
        err.print(f"[red]error:[/red] {exc.message}", highlight=False)
        raise typer.Exit(3) from None
    except LookalikeError as exc:
        err.print(f"[red]error:[/red] {exc.message}", highlight=False)
        raise typer.Exit(1) from None


@app.command()
def serve(
    host: Annotated[
        str | None,
        typer.Option(
            help="Interface to bind.", show_default=_setting_default("host", "LOOKALIKE_HOST")
        ),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(
            help="Port to listen on.", show_default=_setting_default("port", "LOOKALIKE_PORT")
        ),
    ] = None,
) -> None:
    """Serve the GraphQL API (GraphiQL at /graphql) until interrupted."""
    from lookalike.schema.http.server import serve as run_server
    from lookalike.services.core.logs import configure_logging

    settings = get_settings()
    configure_logging(settings.log_level)
    run_server(settings, host or settings.host, port or settings.port)


@app.command()
def schema() -> None:
    """Print the GraphQL schema (SDL), e.g. lookalike schema > schema.graphql"""
    from lookalike.schema.execution.schema import sdl

    out.file.write(sdl())


@app.command()
def models() -> None:
    """Load both embedding models from their packages and embed a sample with each.

    Nothing is downloaded: run it with the network off (the Docker build does) to prove an
    air-gapped server has every file it needs.
    """
    import time

    from lookalike.services.embeddings.text_model import MODEL_NAME, text_embedder
    from lookalike.services.faces.model import MODEL_LABEL, check_model

    started = time.perf_counter()
    vectors = text_embedder().encode(["an offline check"])
    out.print(
        f"text model: {MODEL_NAME}, {vectors.shape[1]}-d, {time.perf_counter() - started:.1f} s",
        highlight=False,
    )

    async def load_face_model() -> Path:
        return check_model()

    started = time.perf_counter()
    weights = _run(load_face_model)  # a missing weight file: one line, exit 3
    out.print(
        f"face model: {MODEL_LABEL}, weights in {weights}, {time.perf_counter() - started:.1f} s",
        highlight=False,
    )


@books_app.command("load")
def books_load(
    source: Annotated[
        Path | None,
        typer.Option(help="Folder of book *.json files; default: the shipped catalogue."),
    ] = None,
) -> None:
    """Add new and changed books; embeds only descriptions never embedded before."""
    from lookalike.services.books.catalogue import Catalogue
    from lookalike.services.books.loading.loader import load_books
    from lookalike.services.books.loading.shipped import read_shipped
    from lookalike.services.books.records import read_source_dir
    from lookalike.services.embeddings.text_model import text_embedder
    from lookalike.services.redis.connection import open_redis

    settings = get_settings()

    async def work() -> str:
        shipped = read_shipped()
        records = list(read_source_dir(source)) if source else shipped.records
        async with open_redis(settings) as (client, _):
            with _progress() as bar:
                task = bar.add_task("loading books", total=len(records))
                summary = await load_books(
                    Catalogue(client, settings),
                    records,
                    shipped=shipped,
                    embedder=text_embedder,
                    progress=lambda n: bar.advance(task, n),
                )
        return str(summary)

    out.print(_run(work), highlight=False)


@books_app.command("convert")
def books_convert(
    vector_type: Annotated[
        str | None,
        typer.Option(
            help="float16 or float32.",
            show_default=_setting_default("vector_type", "LOOKALIKE_VECTOR_TYPE"),
        ),
    ] = None,
    hnsw_m: Annotated[
        int | None,
        typer.Option(
            min=2,
            max=512,
            help="HNSW M.",
            show_default=_setting_default("hnsw_m", "LOOKALIKE_HNSW_M"),
        ),
    ] = None,
    hnsw_ef_construction: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=4096,
            help="HNSW EF_CONSTRUCTION.",
            show_default=_setting_default("hnsw_ef_construction", "LOOKALIKE_HNSW_EF_CONSTRUCTION"),
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            help="Convert even while live servers use the index: they stop being ready "
            "(503, SERVICE_UNAVAILABLE) until restarted with these settings."
        ),
    ] = False,
) -> None:
    """Convert the book index and its stored vectors to these settings, in place.

    Nothing is re-embedded. Refused (exit 3) while other live servers use the index, unless
    --force. Then start the servers with the same settings.
    """
    from lookalike.services.books.catalogue import Catalogue
    from lookalike.services.books.index import shaping_settings
    from lookalike.services.books.loading.loader import ensure_book_index
    from lookalike.services.redis.connection import open_redis

    if vector_type not in (None, "float16", "float32"):
        err.print("[red]error:[/red] --vector-type is float16 or float32", highlight=False)
        raise typer.Exit(1)
    chosen = {
        "vector_type": vector_type,
        "hnsw_m": hnsw_m,
        "hnsw_ef_construction": hnsw_ef_construction,
    }
    settings = get_settings().model_copy(
        update={name: value for name, value in chosen.items() if value is not None}
    )

    async def work() -> str:
        async with open_redis(settings) as (client, _):
            catalogue = Catalogue(client, settings)
            change = await ensure_book_index(catalogue, force=force)
            status = await catalogue.until_indexed()
        done = {"unchanged": "already has", "created": "created with", "rebuilt": "converted to"}
        return (
            f"the book index {settings.index_name!r} {done[change]} "
            f"{shaping_settings(settings)}: {status.documents} books"
        )

    out.print(_run(work), highlight=False)


@books_app.command("similar")
def books_similar(
    book_id: Annotated[str, typer.Argument(metavar="ID", help="The book's id.")],
    k: Annotated[int, typer.Option(help="How many neighbours (1 to 100).")] = 5,
) -> None:
    """The k books nearest to one book, as a table."""
    from lookalike.services.books.loading.loader import open_catalogue
    from lookalike.services.books.requests import SimilarRequest
    from lookalike.services.core.errors import BookNotFound

    settings = get_settings()

    async def work() -> Table:
        request = SimilarRequest(book_id, k, fields=TABLE_FIELDS)
        async with open_catalogue(settings) as (catalogue, _):
            (source,) = await catalogue.read([book_id], TABLE_FIELDS)
            if source is None:
                raise BookNotFound.for_id(book_id)
            (neighbours,) = await catalogue.similar([request], {book_id: source})
        table = _neighbour_table(
            f"Nearest to {source.id} {source.title!r} by {source.author}", neighbours
        )
        if not source.embedded:
            table.caption = "This book has no description, so no embedding and no neighbours."
        return table

    out.print(_run(work))


@books_app.command("search")
def books_search(
    text: Annotated[str, typer.Argument(help="What the book is about, in your words.")],
    k: Annotated[int, typer.Option(help="How many books (1 to 100).")] = 10,
    genre: Annotated[list[str] | None, typer.Option(help="Only these genres (repeatable).")] = None,
) -> None:
    """The k books whose descriptions are nearest in meaning to TEXT, as a table."""
    from lookalike.services.books.filters import BookFilter
    from lookalike.services.books.loading.loader import open_catalogue
    from lookalike.services.books.requests import SearchRequest
    from lookalike.services.embeddings.query_vectors import QueryEmbeddings
    from lookalike.services.embeddings.text_model import text_embedder

    settings = get_settings()

    async def work() -> Table:
        facets = BookFilter(genres=tuple(genre) if genre else None)
        request = SearchRequest(text, k, facets, TABLE_FIELDS)
        async with open_catalogue(settings) as (catalogue, _):
            queries = QueryEmbeddings(catalogue.redis, text_embedder, settings.search_cache_size)
            (vector,) = await queries.vectors([text])
            (neighbours,) = await catalogue.search([request], [vector])
        return _neighbour_table(f"Nearest to {text!r}", neighbours)

    out.print(_run(work))


def _neighbour_table(title: str, neighbours: list[Any]) -> Table:
    """Matches carry their books (with ``TABLE_FIELDS``): the vector query returned them."""
    table = Table(title=title)
    for column in ("#", "id", "title", "author", "distance"):
        table.add_column(column, justify="right" if column in "# distance" else "left")
    for rank, match in enumerate(neighbours, 1):
        book = match.book
        table.add_row(str(rank), book.id, book.title, book.author, f"{match.distance:.3f}")
    return table


@books_app.command("pack")
def books_pack(
    source: Annotated[Path, typer.Option(help="Folder of book *.json files.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Where to write the files.")] = Path(
        "data"
    ),
) -> None:
    """Embed a catalogue with the model and write the files data/ ships (maintainers)."""
    import os

    from lookalike.services.books.loading.shipped import write_shipped
    from lookalike.services.books.records import read_source_dir
    from lookalike.services.embeddings.text_model import TextEmbedder

    async def work() -> int:
        records = list(read_source_dir(source))
        # a batch job on an idle machine: every core helps
        embedder = TextEmbedder(threads=os.cpu_count() or 1)
        return write_shipped(records, embedder, out_dir, progress=sys.stderr.isatty())

    count = _run(work)
    out.print(f"wrote {count} vectors to {out_dir}", highlight=False)


@faces_app.command("enroll")
def faces_enroll(
    folder: Annotated[Path, typer.Argument(metavar="DIR", help="One folder per person.")],
    images: Annotated[str, typer.Option(help="Image numbers to enrol, e.g. 1-5 or 1,3,7.")] = "1-5",
) -> None:
    """Enrol every person folder of DIR (the folder name is the person id)."""
    from lookalike.services.core.errors import NoFace
    from lookalike.services.faces.evaluation import parse_numbers, people_in
    from lookalike.services.faces.recognition import open_faces, validate_person_id
    from lookalike.services.redis.connection import open_redis

    settings = get_settings()

    async def work() -> str:
        numbers = parse_numbers(images)
        people = people_in(folder)
        for person in people:
            validate_person_id(person)
        photos = [
            (p, path)
            for p, found in people.items()
            for n, path in sorted(found.items())
            if n in numbers
        ]
        added = again = faceless = 0
        async with open_redis(settings) as (client, _), open_faces(settings, client) as faces:
            with _progress() as bar:
                task = bar.add_task("enrolling faces", total=len(photos))
                for person, path in photos:
                    before = (await faces.store.get_many([person]))[0]
                    try:
                        after = await faces.enroll(person, path.read_bytes(), None)
                    except NoFace:
                        faceless += 1
                    else:
                        grew = after.face_count > (before.face_count if before else 0)
                        added, again = added + grew, again + (not grew)
                    bar.advance(task)
        return (
            f"{len(people)} people, {len(photos)} photos: {added} faces added, "
            f"{again} already enrolled, {faceless} without a face"
        )

    out.print(_run(work), highlight=False)


@faces_app.command("forget")
def faces_forget(
    person_id: Annotated[str, typer.Argument(metavar="ID", help="The person's id.")],
) -> None:
    """Delete a person and every face vector of theirs."""
    from lookalike.services.faces.recognition import validate_person_id
    from lookalike.services.faces.store import face_store
    from lookalike.services.redis.connection import open_redis

    settings = get_settings()

    async def work() -> bool:
        validate_person_id(person_id)
        async with open_redis(settings) as (client, _):
            store = face_store(settings.face_layout, client)
            await store.open()
            return await store.delete(person_id)

    deleted = _run(work)
    out.print(f"forgot {person_id}" if deleted else f"nobody is enrolled as {person_id}")


@faces_app.command("eval")
def faces_eval(
    dataset: Annotated[Path, typer.Option(help="One folder per person, numbered images.")],
    enroll: Annotated[str, typer.Option(help="Image numbers to enrol.")] = "1-5",
    query: Annotated[str, typer.Option(help="Image numbers to identify.")] = "6-10",
    layout: Annotated[
        str | None,
        typer.Option(
            help="hash or json.", show_default=_setting_default("face_layout", "FACE_LAYOUT")
        ),
    ] = None,
    plot: Annotated[
        Path | None,
        typer.Option(help="Draw the distance distributions and error rates to this PNG file."),
    ] = None,
    probes: Annotated[
        bool,
        typer.Option(
            help="Also probe degraded copies and held-out variants of one photo a person "
            "(quality reasons, robustness)."
        ),
    ] = True,
) -> None:
    """Run the course's protocol on a throwaway namespace: closed and open set figures, and
    what degraded and varied photos get (quality reasons; named or not)."""
    import os

    from lookalike.services.faces.evaluation import (
        evaluate,
        parse_numbers,
        people_in,
        probe_count,
    )
    from lookalike.services.faces.images import ImageLimits
    from lookalike.services.faces.workers import FaceWorkers
    from lookalike.services.redis.connection import open_redis

    settings = get_settings()
    chosen = layout or settings.face_layout
    if chosen not in ("hash", "json"):
        err.print("[red]error:[/red] --layout is hash or json", highlight=False)
        raise typer.Exit(1)

    async def work() -> list[str]:
        enrolled, queried = parse_numbers(enroll), parse_numbers(query)
        total = sum(len(images) for images in people_in(dataset).values())
        total += probe_count(dataset) if probes else 0
        limits = ImageLimits(settings.max_image_pixels, settings.max_decoded_pixels)
        embedder = FaceWorkers(os.cpu_count() or 1, limits)
        try:
            await embedder.start()
            async with open_redis(settings) as (client, _):
                with _progress() as bar:
                    task = bar.add_task("embedding faces", total=total)
                    report = await evaluate(
                        client,
                        embedder,
                        dataset,
                        enroll=enrolled,
                        query=queried,
                        layout="json" if chosen == "json" else "hash",
                        threshold=settings.face_threshold,
                        probes=probes,
                        progress=lambda n: bar.advance(task, n),
                    )
        finally:
            await embedder.close()
        if plot is not None:
            from lookalike.services.faces.plot import plot_distances

            plot_distances(report, plot, title=f"{dataset.name}: {report.model}")
            return [*report.lines(), f"plot: {plot}"]
        return report.lines()

    for line in _run(work):
        out.print(line, highlight=False)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
