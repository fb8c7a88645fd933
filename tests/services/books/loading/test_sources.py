"""A catalogue of one's own through ``lookalike books load --source``: a JSON Lines file, a CSV
file, a folder of JSON files, each detected from the path; bad rows named by line and field
with nothing written; ``--prune`` and ``--dry-run``. Run as a user runs it, on a real Redis,
each test under an index and key prefix of its own."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from typer.testing import CliRunner, Result

from lookalike.schema.cli import app
from lookalike.services.books.catalogue import Catalogue
from lookalike.services.books.loading.loader import prepare_catalogue, remove_books
from lookalike.services.books.loading.shipped import shipped_dir
from lookalike.services.core.settings import Settings, get_settings
from lookalike.services.redis.connection import open_client
from tests.conftest import both_backends, redis_dump, scratch_catalogue

SHIPPED_FILE = shipped_dir() / "books.jsonl"
SHIPPED_LINES = SHIPPED_FILE.read_text(encoding="utf-8").splitlines()


def book(number: int, **fields: Any) -> dict[str, Any]:
    """A small book of one's own (descriptions of the shipped catalogue: no model run)."""
    shipped = json.loads(SHIPPED_LINES[number])
    return {
        "id": str(100_000 + number),
        "title": f"Book {number}",
        "author": f"Author {number % 3}",
        "description": shipped["description"],
        **fields,
    }


@pytest.fixture
def own(settings: Settings, request: pytest.FixtureRequest) -> Iterator[Settings]:
    name = "t_own_" + request.node.name.replace("[", "_").replace("]", "")[:36]
    with scratch_catalogue(settings, name) as scratch:
        yield scratch


@pytest.fixture
def books_load(own: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("REDIS_URL", own.redis_url or "")
    monkeypatch.setenv("LOOKALIKE_DATA_DIR", str(own.data_dir))
    monkeypatch.setenv("LOOKALIKE_INDEX_NAME", own.index_name)
    monkeypatch.setenv("LOOKALIKE_KEY_PREFIX", own.key_prefix)
    get_settings.cache_clear()

    def run(*args: str) -> Result:
        return CliRunner().invoke(app, ["books", "load", *args])

    yield run
    get_settings.cache_clear()


def stored(own: Settings) -> dict[bytes, Any]:
    """Every key of the scratch catalogue with its value."""
    return redis_dump(own.redis_url or "", f"{own.key_prefix}*")


def hash_of(own: Settings, book_id: str) -> dict[bytes, bytes]:
    found: dict[bytes, bytes] = stored(own).get(f"{own.key_prefix}:{book_id}".encode(), {})
    return found


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def test_the_shipped_jsonl_file_loads_as_a_source(books_load: Any, own: Settings) -> None:
    result = books_load("--source", str(SHIPPED_FILE))
    assert result.exit_code == 0, result.output
    assert "1486 books: 1486 added, 0 updated, 0 unchanged" in result.stdout
    assert "0 descriptions embedded" in result.stdout  # the shipped vectors fit
    assert hash_of(own, "9")[b"title"] == b"Transformers: The Ultimate Guide"


def test_a_csv_file_loads_with_quoting_lists_empty_cells_and_a_bom(
    books_load: Any, own: Settings, tmp_path: Path
) -> None:
    first, second = book(1), book(2)
    path = tmp_path / "mine.csv"
    with path.open("w", encoding="utf-8-sig", newline="") as out:  # utf-8-sig: a BOM
        writer = csv.writer(out)
        writer.writerow(
            ["id", "title", "author", "description", "genres", "editions", "pages",
             "year_published", "url", "metrics.score", "metrics.rating_votes", "inventory"]
        )  # fmt: skip
        writer.writerow(
            [first["id"], 'Commas, "quotes"\nand a line break', "A. Author",
             first["description"], "horror; gothic ;", "english;french", "312", "1999",
             "https://example.org/1", "4.5", "1200", "1_1:available;1_2:on_loan"]
        )  # fmt: skip
        writer.writerow([second["id"], "Plain", "B. Author", second["description"]] + [""] * 8)
    result = books_load("--source", str(path))
    assert result.exit_code == 0, result.output
    assert "2 books: 2 added" in result.stdout
    one = hash_of(own, first["id"])
    assert one[b"title"] == b'Commas, "quotes"\nand a line break'
    assert one[b"genres"] == b"horror|gothic"
    assert json.loads(one[b"editions"]) == ["english", "french"]
    assert (one[b"pages"], one[b"year_published"], one[b"rating"]) == (b"312", b"1999", b"4.5")
    assert json.loads(one[b"inventory"]) == [["1_1", "available"], ["1_2", "on_loan"]]
    two = hash_of(own, second["id"])
    assert not {b"genres", b"pages", b"url", b"rating", b"inventory"} & set(two)
    assert b"embedding" in two


def test_a_folder_of_json_files_still_loads(books_load: Any, own: Settings, tmp_path: Path) -> None:
    for number in (1, 2, 3):
        record = book(number)
        (tmp_path / f"{record['id']}.json").write_text(json.dumps(record), encoding="utf-8")
    result = books_load("--source", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert "3 books: 3 added" in result.stdout
    assert len(stored(own)) == 3


@pytest.mark.parametrize(
    ("name", "content", "messages"),
    [
        (
            "bad.jsonl",
            "\n".join(
                [
                    json.dumps(book(1)),
                    json.dumps(book(2, pages="many")),
                    "{not json",
                    json.dumps(book(4, id="0042")),
                    json.dumps(book(5, genres="horror")),
                    json.dumps({**book(6), "titel": "typo"}),
                    json.dumps(book(1)),  # the same id as line 1
                ]
            ),
            [
                "6 bad book record(s)",
                "bad.jsonl:2: pages: must be an integer",
                "bad.jsonl:3: record: not JSON",
                "bad.jsonl:4: id: a decimal integer",
                "bad.jsonl:5: genres: must be a list of strings",
                "bad.jsonl:6: titel: no such field",
                "bad.jsonl:7: id: 100001 again (first at",
            ],
        ),
        (
            "bad.csv",
            'id,title,author,description,pages,metrics.score\n1,a,b,c,12,4\n2,a,b,"multi\nline",x,4'
            "\n3,a,b,c,,high\n4,a,b,c,1,9\n",
            [
                "bad.csv:3: pages: must be an integer, got 'x'",  # the row's first line
                "bad.csv:5: metrics.score: must be a number",
                "bad.csv:6: metrics.score: must be between 0 and 5",
            ],
        ),
        (
            "bytes.jsonl",
            b"\xef\xbb\xbf"
            + json.dumps(book(1)).encode()
            + b'\n{"id": "\xff"}\r\n'
            + json.dumps(book(2, title="nul\x00")).encode()
            + b"\n",
            ["bytes.jsonl:2: record: not UTF-8", "bytes.jsonl:3: title: must not hold NUL"],
        ),
        ("latin1.csv", b"id,title,author,description\n1,a,b,c\n2,caf\xe9,b,c\n", [":3: not UTF-8"]),
        (
            "nul.csv",
            b"id,title,author,description\n1,a\x00,b,c\n",
            ["nul.csv:2: title: must not hold NUL"],
        ),
        ("header.csv", "id,title,writer,description\n1,a,b,c\n", ["column 'writer' is not"]),
        ("header2.csv", "id,title,description\n1,a,c\n", ["column 'author' is required"]),
        ("books.txt", "1,a,b,c\n", ["give a .jsonl file, a .csv file or a folder"]),
    ],
)
def test_bad_rows_are_named_by_line_and_field_and_nothing_is_written(
    books_load: Any,
    own: Settings,
    tmp_path: Path,
    name: str,
    content: str | bytes,
    messages: list[str],
) -> None:
    books_load("--source", str(write_jsonl(tmp_path / "good.jsonl", [book(8)])))
    before = stored(own)
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    result = books_load("--source", str(path))
    assert result.exit_code == 1
    for message in messages:
        assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert stored(own) == before


@both_backends
def test_prune_makes_the_catalogue_exactly_the_source(
    books_load: Any, own: Settings, tmp_path: Path
) -> None:
    source = tmp_path / "mine.jsonl"
    assert (
        books_load("--source", str(write_jsonl(source, [book(n) for n in range(5)]))).exit_code == 0
    )
    kept = [book(0, title="Book 0, second edition"), book(1), book(2), book(7)]
    write_jsonl(source, kept)

    plain = books_load("--source", str(source))  # without --prune nothing leaves
    assert "4 books: 1 added, 1 updated, 2 unchanged" in plain.stdout
    assert {hash_of(own, book(n)["id"]) != {} for n in (3, 4)} == {True}

    pruned = books_load("--source", str(source), "--prune")
    assert pruned.exit_code == 0, pruned.output
    assert "4 books: 0 added, 0 updated, 4 unchanged, 2 removed" in pruned.stdout
    ids = {key.decode().rsplit(":", 1)[1] for key in stored(own) if b":" in key}
    assert ids == {r["id"] for r in kept}


@both_backends
def test_a_dry_run_says_what_a_load_would_do_and_changes_nothing(
    books_load: Any, own: Settings, tmp_path: Path
) -> None:
    source = tmp_path / "mine.jsonl"
    books_load("--source", str(write_jsonl(source, [book(n) for n in range(5)])))
    write_jsonl(source, [book(0, pages=10), book(1), book(2), book(7), book(8)])
    before = stored(own)
    version = redis_dump(own.redis_url or "", f"catalogue-version:{own.index_name}")

    for flags, removed in (([], "0 removed (2 stored books"), (["--prune"], "2 removed (2 stored")):
        result = books_load("--source", str(source), "--dry-run", *flags)
        assert result.exit_code == 0, result.output
        assert "dry run, nothing changed: 5 books in the source would be 2 added, " in result.stdout
        assert "1 updated, 2 unchanged; " + removed in result.stdout
        assert stored(own) == before
        assert redis_dump(own.redis_url or "", f"catalogue-version:{own.index_name}") == version


def test_a_catalogue_of_ones_own_emptied_stays_empty_at_the_next_start(
    books_load: Any, own: Settings, tmp_path: Path
) -> None:
    """The shipped books are loaded at a start only into a catalogue nobody has written:
    one loaded from a source and then emptied is not refilled with them."""
    assert books_load("--source", str(write_jsonl(tmp_path / "a.jsonl", [book(1)]))).exit_code == 0

    async def restart() -> int | None:
        client = await open_client(own.redis_url or "", 5)
        catalogue = Catalogue(client, own)
        await remove_books(catalogue, [book(1)["id"]])
        loaded = await prepare_catalogue(catalogue, autoload=True)
        await client.aclose()
        return None if loaded is None else loaded.added

    assert anyio.run(restart) is None
    assert stored(own) == {}
