"""The ``lookalike`` command: serve the API, load and query the catalogue, enrol faces.

It drives every layer (it serves the app, exports the schema, loads, evaluates), so it sits
above them beside the app factory, and no layer imports it.

Every command exits with one of ``Exit``'s codes (the README's table, docs/decisions.md).
"""

from __future__ import annotations

import asyncio
import enum
import errno
import sys
from collections.abc import Awaitable, Callable
from importlib.metadata import version
from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from lookalike.schema.typer_compat import hide_flag_types
from lookalike.services.books.records import BookFields
from lookalike.services.core.errors import LookalikeError, ServiceUnavailable
from lookalike.services.core.settings import Settings, get_settings

T = TypeVar("T")


class Exit(enum.IntEnum):
    """What a command's exit code means, the same for every command."""

    DONE = 0
    REFUSED = 1  # a bad argument or file, an id that names nothing: the message says which
    USAGE = 2  # the command line itself (an unknown option, a missing argument): click's code
    REDIS = 3  # Redis unreachable or unfit, or an index live servers use: try again later
    ADDRESS = 4  # serve: the host and port cannot be listened on (in use: choose --port)


# What the tables show of a book (and its vector, for the book whose neighbours are asked)
TABLE_FIELDS = BookFields(frozenset({"title", "author"}), vector=True)

hide_flag_types()
app = typer.Typer(
    help="lookalike: similar books and enrolled faces, by Redis vector search.\n\n"
    "Exit codes, the same for every command: 0 done; 1 input refused (a bad argument or "
    "file, an id that names nothing); 2 usage error; 3 Redis unavailable or unfit; 4 serve's "
    "address in use or not usable (choose another --port).",
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
        _fail(exc.message, Exit.REDIS)
    except LookalikeError as exc:
        _fail(exc.message, Exit.REFUSED)


def _fail(message: str, code: Exit) -> NoReturn:
    """One line on stderr, and the code that says what kind of failure it was."""
    err.print(f"[red]error:[/red] {message}", highlight=False)
    raise typer.Exit(code) from None


def _plural(count: int, one: str, many: str | None = None) -> str:
    return f"{count} {one if count == 1 else many or one + 's'}"


def _show_version(wanted: bool) -> None:
    if wanted:
        out.print(f"lookalike {version('lookalike')}", highlight=False)
        raise typer.Exit()


@app.callback()
def main_options(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version", is_eager=True, callback=_show_version, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Options of the command itself (its help is the Typer's, above)."""


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
    workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=64,
            help="API processes on the one port.",
            show_default=_setting_default("workers", "LOOKALIKE_WORKERS"),
        ),
    ] = None,
) -> None:
    """Serve the GraphQL API (GraphiQL at /graphql) until interrupted.

    The address is taken before anything loads: one in use exits 4 at once.
    """
    from lookalike.schema.http.server import listening_socket
    from lookalike.schema.http.server import serve as run_server
    from lookalike.services.core.logs import configure_logging

    settings = get_settings()
    configure_logging(settings.log_level)
    host, port = host or settings.host, port or settings.port
    try:
        listener = listening_socket(host, port)
    except OSError as exc:
        where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        if exc.errno == errno.EADDRINUSE:
            _fail(
                f"{where} is already in use (another lookalike serve?): choose another port "
                "with --port or LOOKALIKE_PORT",
                Exit.ADDRESS,
            )
        _fail(
            f"cannot listen on {where}: {exc.strerror or exc}; check --host and --port",
            Exit.ADDRESS,
        )
    try:
        run_server(settings, listener, workers or settings.workers)
    except ServiceUnavailable as exc:  # the supervisor's embedded Redis did not start
        _fail(exc.message, Exit.REDIS)
    except LookalikeError as exc:  # refused before serving (a broken trusted documents file)
        _fail(exc.message, Exit.REFUSED)


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
        typer.Option(
            help="A .jsonl file, a .csv file with a header row, or a folder of *.json files, "
            "one book each (README, 'Your catalogue'); default: the shipped catalogue."
        ),
    ] = None,
    prune: Annotated[
        bool,
        typer.Option(help="Also remove stored books whose ids are not in the source."),
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option(help="Say what would be added, updated, left and removed; change nothing."),
    ] = False,
) -> None:
    """Add new and changed books; embeds only descriptions never embedded before. Every
    record is checked first: a bad one is reported with its line and field, nothing written."""
    from lookalike.services.books.catalogue import Catalogue
    from lookalike.services.books.loading.loader import claim, load_books
    from lookalike.services.books.loading.shipped import read_shipped
    from lookalike.services.books.loading.sources import read_source
    from lookalike.services.embeddings.text_model import text_embedder
    from lookalike.services.redis.connection import open_redis

    settings = get_settings()

    async def work() -> str:
        shipped = read_shipped()
        records = read_source(source) if source else shipped.records
        async with open_redis(settings) as (client, _):
            catalogue = Catalogue(client, settings)
            with _progress() as bar:
                task = bar.add_task("loading books", total=len(records))
                summary = await load_books(
                    catalogue,
                    records,
                    shipped=shipped,
                    embedder=text_embedder,
                    progress=lambda n: bar.advance(task, n),
                    prune=prune,
                    dry_run=dry_run,
                )
            if not dry_run:
                await claim(catalogue)
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
        _fail("--vector-type is float16 or float32", Exit.REFUSED)
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
    # SearchMode's names, written out: importing the services' requests here would slow every
    # command's start, --help included (test_books_search_takes_the_apis_modes runs each)
    mode: Annotated[
        Literal["HYBRID", "SEMANTIC", "KEYWORD"],
        typer.Option(
            case_sensitive=False,
            help="SEMANTIC: by meaning; KEYWORD: by its words (title, author, description); "
            "HYBRID: both, a typed title first (the API's default).",
        ),
    ] = "HYBRID",
) -> None:
    """The k books that best answer TEXT, as searchBooks ranks them, as a table."""
    from lookalike.services.books.filters import BookFilter
    from lookalike.services.books.loading.loader import open_catalogue
    from lookalike.services.books.requests import SearchMode, SearchRequest
    from lookalike.services.embeddings.query_vectors import QueryEmbeddings
    from lookalike.services.embeddings.text_model import text_embedder

    settings = get_settings()

    async def work() -> Table:
        facets = BookFilter(genres=tuple(genre) if genre else None)
        request = SearchRequest(text, k, facets, TABLE_FIELDS, SearchMode[mode])
        async with open_catalogue(settings) as (catalogue, _):
            queries = QueryEmbeddings(catalogue.redis, text_embedder, settings.search_cache_size)
            (vector,) = await queries.vectors([text])
            (neighbours,) = await catalogue.search([request], [vector])
        return _neighbour_table(f"{mode} search for {text!r}", neighbours)

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
    source: Annotated[
        Path, typer.Option(help="A .jsonl or .csv file, or a folder of book *.json files.")
    ],
    out_dir: Annotated[Path, typer.Option("--out", help="Where to write the files.")] = Path(
        "data"
    ),
) -> None:
    """Embed a catalogue with the model and write the files data/ ships (maintainers)."""
    import os

    from lookalike.services.books.loading.shipped import write_shipped
    from lookalike.services.books.loading.sources import read_source
    from lookalike.services.embeddings.text_model import TextEmbedder

    async def work() -> int:
        records = read_source(source)
        # a batch job on an idle machine: every core helps
        embedder = TextEmbedder(threads=os.cpu_count() or 1)
        return write_shipped(records, embedder, out_dir, progress=sys.stderr.isatty())

    count = _run(work)
    out.print(f"wrote {count} vectors to {out_dir}", highlight=False)


ENROLL_HELP = (
    "Enrol the people of DIR: each folder in DIR is one person, its name the person's id "
    "(1 to 64 of A-Z a-z 0-9 - _).\n\n"
    "Photos are found by number: a person folder's files named 1.png, 2.jpg, 3.jpg and so on "
    "(a number, then .jpg, .jpeg, .png, .webp, .heic, .heif, .avif, .mpo or .bmp, in any "
    "case); --images picks which numbers, other files are ignored. The largest face of each "
    "photo is enrolled; a photo enrolled before adds nothing.\n\n"
    "Example: DIR/ada/1.png and DIR/ada/2.png enrol two faces of the person ada."
)


@faces_app.command("enroll", help=ENROLL_HELP)
def faces_enroll(
    folder: Annotated[
        Path, typer.Argument(metavar="DIR", help="A folder of person folders, e.g. DIR/ada/1.png.")
    ],
    images: Annotated[
        str, typer.Option(help="Which numbered photos to enrol, e.g. 1-5 or 1,3,7.")
    ] = "1-5",
    name: Annotated[
        str | None,
        typer.Option(
            help="The person's display name (1 to 200 characters); DIR must then hold "
            "one person folder."
        ),
    ] = None,
) -> None:
    """Its help is ENROLL_HELP: typer keeps a docstring's line breaks past its first paragraph."""
    from lookalike.services.core.errors import (
        BadUserInput,
        FaceQualityTooLow,
        MoreThanOneFace,
        NoFace,
    )
    from lookalike.services.faces.evaluation import parse_numbers, people_in
    from lookalike.services.faces.recognition import open_faces, validate_person_id
    from lookalike.services.redis.connection import open_redis

    settings = get_settings()

    async def work() -> str:
        numbers = parse_numbers(images)
        people = people_in(folder)
        for person in people:
            validate_person_id(person)
        if name is not None and len(people) != 1:
            raise BadUserInput(
                f"--name names one person, but {folder} holds {len(people)} person folders"
            )
        photos = [
            (p, path)
            for p, found in people.items()
            for n, path in sorted(found.items())
            if n in numbers
        ]
        added = again = faceless = refused = 0
        async with open_redis(settings) as (client, _), open_faces(settings, client) as faces:
            with _progress() as bar:
                task = bar.add_task("enrolling faces", total=len(photos))
                for person, path in photos:
                    before = (await faces.store.get_many([person]))[0]
                    try:
                        after = await faces.enroll(person, path.read_bytes(), name)
                    except NoFace:
                        faceless += 1
                    except (FaceQualityTooLow, MoreThanOneFace):
                        refused += 1
                    else:
                        grew = after.face_count > (before.face_count if before else 0)
                        added, again = added + grew, again + (not grew)
                    bar.advance(task)
        return (
            f"{_plural(len(people), 'person', 'people')}, {_plural(len(photos), 'photo')}: "
            f"{_plural(added, 'face')} added, {again} already enrolled, {faceless} without a face, "
            f"{refused} refused (several faces, or a face not usable)"
        )

    out.print(_run(work), highlight=False)


@faces_app.command("forget")
def faces_forget(
    person_id: Annotated[str, typer.Argument(metavar="ID", help="The person's id.")],
) -> None:
    """Delete a person and every face vector of theirs (exit 1 if nobody has that id)."""
    from lookalike.services.core.errors import PersonNotFound
    from lookalike.services.faces.recognition import validate_person_id
    from lookalike.services.faces.store import face_store
    from lookalike.services.redis.connection import open_redis

    settings = get_settings()

    async def work() -> None:
        validate_person_id(person_id)
        async with open_redis(settings) as (client, _):
            store = face_store(settings.face_layout, client)
            await store.open()
            if not await store.delete(person_id):
                raise PersonNotFound.for_id(person_id)

    _run(work)
    out.print(f"forgot {person_id}", highlight=False)


@faces_app.command("list")
def faces_list(
    person_id: Annotated[str, typer.Argument(metavar="ID", help="The person's id.")],
) -> None:
    """A person's enrolled faces, oldest first: id (what forget-face takes), when enrolled
    (UTC), the quality measured then."""
    from lookalike.services.core.errors import PersonNotFound
    from lookalike.services.faces.recognition import validate_person_id
    from lookalike.services.faces.store import EnrolledFace, face_store
    from lookalike.services.redis.connection import open_redis

    settings = get_settings()

    async def work() -> list[EnrolledFace]:
        validate_person_id(person_id)
        async with open_redis(settings) as (client, _):
            store = face_store(settings.face_layout, client)
            await store.open()
            (faces,) = await store.faces_of_many([person_id])
        if not faces:
            raise PersonNotFound.for_id(person_id)
        return faces

    for face in _run(work):  # one line a face, the id first: easy to cut for forget-face
        quality = face.quality
        if quality is None:
            measured = "quality not recorded"
        else:
            usable = "usable" if quality.usable else "unusable"
            measured = " ".join([usable, f"score {quality.score:.2f}", *quality.reasons])
        out.print(face.id, face.added_at or "time not recorded", measured, highlight=False)


@faces_app.command("forget-face")
def faces_forget_face(
    face_id: Annotated[str, typer.Argument(metavar="FACE_ID", help="An id `faces list` shows.")],
) -> None:
    """Delete one enrolled face (the person too if it was their last)."""
    from lookalike.services.faces.recognition import forget_face
    from lookalike.services.faces.store import Person, face_store
    from lookalike.services.redis.connection import open_redis

    settings = get_settings()

    async def work() -> Person | None:
        async with open_redis(settings) as (client, _):
            store = face_store(settings.face_layout, client)
            await store.open()
            return await forget_face(store, face_id)

    person = _run(work)
    if person is None:
        out.print("forgot the face, the person's last: the person is forgotten too")
    else:
        out.print(f"forgot the face; {person.id} has {person.face_count} left", highlight=False)


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
        _fail("--layout is hash or json", Exit.REFUSED)

    async def work() -> list[str]:
        enrolled, queried = parse_numbers(enroll), parse_numbers(query)
        photos = people_in(dataset).values()
        total = sum(len(images) for images in photos)
        total += sum(1 for images in photos for n in images if n in enrolled)  # again, enrolled
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
