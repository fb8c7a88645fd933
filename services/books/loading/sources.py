"""A catalogue of one's own, read from what the path is: a JSON Lines file (the shipped
format), a CSV file with a header row, or a folder of one JSON file per book (the course's).

Every record is read and checked before anything is written, and every bad row is reported
with its line (or file) and field, so a source with a mistake changes nothing. A CSV row is
the same record flattened: list fields are ``;``-separated, ``inventory`` is
``stock_id:status`` items, ``metrics`` is two columns, ``metrics.score`` and
``metrics.rating_votes``; an empty cell is an absent field.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lookalike.services.books.records import (
    RECORD_FIELDS,
    REQUIRED_FIELDS,
    RecordProblem,
    check_record,
)
from lookalike.services.core.errors import CatalogueError

LIST_SEPARATOR = ";"
CSV_COLUMNS = (
    *(name for name in RECORD_FIELDS if name != "metrics"),
    "metrics.score",
    "metrics.rating_votes",
)
BOM = "\ufeff".encode()
SHOWN_PROBLEMS = 10  # bad rows named in the error; the rest are counted

Origin = str  # "file:line", or a file of a folder


def read_source(path: Path) -> list[dict[str, Any]]:
    """Every book of the source, checked; CatalogueError naming every bad row otherwise."""
    if path.is_dir():
        rows = _folder(path)
    elif not path.exists():
        raise CatalogueError(f"{path}: no such file or folder")
    elif path.suffix.lower() in (".jsonl", ".ndjson"):
        rows = _json_lines(path)
    elif path.suffix.lower() == ".csv":
        rows = _csv_rows(path)
    else:
        raise CatalogueError(
            f"{path}: not a catalogue: give a .jsonl file, a .csv file or a folder of .json files"
        )
    records: list[dict[str, Any]] = []
    problems: list[str] = []
    first_seen: dict[str, Origin] = {}
    for origin, row in rows:
        try:
            if isinstance(row, RecordProblem):
                raise row
            check_record(row)
            book_id = row["id"]
            if book_id in first_seen:
                raise RecordProblem("id", f"{book_id} again (first at {first_seen[book_id]})")
            first_seen[book_id] = origin
            records.append(row)
        except RecordProblem as problem:
            problems.append(f"{origin}: {problem}")
    if problems:
        shown = problems[:SHOWN_PROBLEMS]
        more = len(problems) - len(shown)
        tail = [f"... and {more} more"] if more else []
        raise CatalogueError(
            f"{len(problems)} bad book record(s) in {path}, nothing was written:\n"
            + "\n".join([*shown, *tail]),
            problems=len(problems),
        )
    if not records:
        raise CatalogueError(f"{path} holds no books")
    return records


Row = tuple[Origin, dict[str, Any] | RecordProblem]


def _folder(folder: Path) -> Iterator[Row]:
    for path in sorted(folder.glob("*.json")):
        yield str(path), _parse_json(_read(path))


def _json_lines(path: Path) -> Iterator[Row]:
    for number, line in enumerate(_read(path).removeprefix(BOM).split(b"\n"), 1):
        if line.strip():
            yield f"{path}:{number}", _parse_json(line)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise CatalogueError(f"{path}: {exc.strerror or exc}") from None


def _parse_json(text: bytes) -> dict[str, Any] | RecordProblem:
    try:
        found = json.loads(text.removeprefix(BOM).decode("utf-8"))
    except UnicodeDecodeError as exc:
        return RecordProblem("record", f"not UTF-8 (byte {exc.start + 1})")
    except json.JSONDecodeError as exc:
        return RecordProblem("record", f"not JSON: {exc}")
    return found if isinstance(found, dict) else RecordProblem("record", "not a JSON object")


def _csv_rows(path: Path) -> Iterator[Row]:
    raw = _read(path).removeprefix(BOM)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise CatalogueError(f"{path}:{line}: not UTF-8, nothing was written") from None
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = [name.strip() for name in next(reader)]
    except StopIteration:
        return
    except csv.Error as exc:
        raise CatalogueError(f"{path}:1: {exc}") from None
    _check_header(path, header)
    start = reader.line_num + 1
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:  # an unclosed quote: the rest cannot be read
            yield f"{path}:{start}", RecordProblem("record", f"not CSV: {exc}")
            return
        origin = f"{path}:{start}"
        start = reader.line_num + 1
        if not any(cell.strip() for cell in cells):
            continue
        if len(cells) > len(header):
            yield origin, RecordProblem("record", f"{len(cells)} cells, {len(header)} columns")
            continue
        try:
            yield origin, _csv_record(dict(zip(header, cells, strict=False)))
        except RecordProblem as problem:
            yield origin, problem


def _check_header(path: Path, header: list[str]) -> None:
    unknown = [name for name in header if name not in CSV_COLUMNS]
    missing = [name for name in REQUIRED_FIELDS if name not in header]
    repeated = sorted({name for name in header if header.count(name) > 1})
    if unknown or missing or repeated:
        what = (
            f"column {unknown[0]!r} is not a field"
            if unknown
            else f"column {missing[0]!r} is required"
            if missing
            else f"column {repeated[0]!r} appears twice"
        )
        raise CatalogueError(
            f"{path}:1: the header row: {what} (the columns: {', '.join(CSV_COLUMNS)}; "
            f"required: {', '.join(REQUIRED_FIELDS)})",
            field=(unknown or missing or repeated)[0],
        )


def _csv_record(cells: dict[str, str]) -> dict[str, Any]:
    """The record a row stands for: required text as it is, optional cells when not empty."""
    record: dict[str, Any] = {name: cells.get(name, "") for name in REQUIRED_FIELDS}
    record["id"] = record["id"].strip()
    given = {n: v.strip() for n, v in cells.items() if n not in REQUIRED_FIELDS and v.strip()}
    metrics: dict[str, Any] = {}
    for name, value in given.items():
        if name in ("genres", "editions"):
            record[name] = _items(value)
        elif name == "inventory":
            record[name] = [_stock(name, item) for item in _items(value)]
        elif name in ("pages", "year_published"):
            record[name] = _integer(name, value)
        elif name == "metrics.score":
            metrics["score"] = _number(name, value)
        elif name == "metrics.rating_votes":
            metrics["rating_votes"] = _integer(name, value)
        else:
            record[name] = value
    if metrics:
        record["metrics"] = metrics
    return record


def _items(value: str) -> list[str]:
    return [item.strip() for item in value.split(LIST_SEPARATOR) if item.strip()]


def _stock(name: str, item: str) -> dict[str, str]:
    stock_id, colon, status = item.rpartition(":")
    if not colon or not stock_id.strip() or not status.strip():
        raise RecordProblem(name, f"items are stock_id:status, got {item!r:.40}")
    return {"stock_id": stock_id.strip(), "status": status.strip()}


def _integer(name: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise RecordProblem(name, f"must be an integer, got {value!r:.40}") from None


def _number(name: str, value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise RecordProblem(name, f"must be a number, got {value!r:.40}") from None
