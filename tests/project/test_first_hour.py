"""A newcomer's first hour: the README's commands as written, what the command line and the
server print, and what the benchmarks need. Each test is something that once went wrong."""

from __future__ import annotations

import ast
import json
import os
import re
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from importlib.metadata import packages_distributions, requires
from pathlib import Path
from typing import Any

import httpx
import pytest
from packaging.requirements import Requirement

from lookalike.services.books.loading.shipped import read_shipped
from lookalike.services.core.settings import Settings
from tests.conftest import LiveServer
from tests.paths import ROOT
from tests.photos import ORL
from tests.servers import Served, serving

README = (ROOT / "README.md").read_text(encoding="utf-8")
LOOKALIKE = Path(sys.executable).with_name("lookalike")  # what `pip install -e .` put there
ESCAPE = "\x1b"


def shell_blocks(text: str) -> list[str]:
    return re.findall(r"```sh\n(.*?)```", text, re.DOTALL)


def json_values(text: str) -> list[Any]:
    decoder, values, at = json.JSONDecoder(), [], 0
    while at < len(text):
        if text[at].isspace():
            at += 1
            continue
        value, at = decoder.raw_decode(text, at)
        values.append(value)
    return values


def test_every_lookalike_command_in_the_readme_runs_without_activating_the_venv() -> None:
    """`lookalike --help` after the first command was "command not found"."""
    commands = "\n".join(shell_blocks(README)) + "\n".join(re.findall(r"^\$ .*", README, re.M))
    bare = re.findall(
        r"^.*(?<![/\w])lookalike (?:serve|models|schema|books|faces)\b.*$", commands, re.M
    )
    assert bare == [], "write .venv/bin/lookalike"
    assert ".venv/bin/lookalike serve" in shell_blocks(README)[0]


def test_the_installed_command_shows_its_help() -> None:
    done = subprocess.run([LOOKALIKE, "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    for command in ("serve", "schema", "models", "books", "faces"):
        assert command in done.stdout
    wide = {**os.environ, "COLUMNS": "200"}  # each default on one line, however many columns
    serve = subprocess.run([LOOKALIKE, "serve", "--help"], capture_output=True, text=True, env=wide)
    assert "LOOKALIKE_HOST, else 127.0.0.1" in serve.stdout
    assert "LOOKALIKE_PORT, else 8000" in serve.stdout


def test_the_benchmarks_need_only_what_the_bench_extra_installs() -> None:
    """Three of four bench scripts crashed with No module named 'httpx'."""
    wanted = {}
    for spec in requires("lookalike") or []:
        requirement = Requirement(spec)
        marker = requirement.marker
        if marker is None or marker.evaluate({"extra": "bench"}):
            wanted[requirement.name.lower().replace("_", "-")] = spec
    distributions = packages_distributions()
    for script in sorted((ROOT / "bench").glob("*.py")):
        tree = ast.parse(script.read_text())
        for node in ast.walk(tree):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom) and node.level == 0
                else []
            )
            for name in names:
                top = name.split(".")[0]
                if top in sys.stdlib_module_names or top in ("lookalike", "bench", ""):
                    continue
                found = {d.lower().replace("_", "-") for d in distributions.get(top, [])}
                assert found & set(wanted), f"{script.name} imports {top}: not in lookalike[bench]"


def test_the_command_line_prints_no_model_bars_and_no_escapes(settings: Settings) -> None:
    """transformers drew "Loading weights" bars on the first search; a pipe gets nothing
    but the answer (stderr empty)."""
    env = {
        **os.environ,
        "REDIS_URL": settings.redis_url or "",
        "LOOKALIKE_DATA_DIR": str(settings.data_dir),
    }
    text = "robots that transform into cars"  # no other test asks it: the model runs
    done = subprocess.run(
        [LOOKALIKE, "books", "search", text, "--k", "3"],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert ESCAPE not in done.stdout
    assert "Transformers" in done.stdout


def test_the_server_log_is_json_lines_and_says_when_the_text_model_loads(
    live_server: LiveServer,
) -> None:
    """The first searchBooks waits seconds for the model: the log says why. No line carries
    uvicorn's color_message with its escapes, and no progress bar breaks a line."""
    query = f'{{ searchBooks(text: "{uuid.uuid4().hex} haunted house", k: 2) {{ distance }} }}'
    answer = httpx.post(f"{live_server.url}/graphql", json={"query": query}, timeout=120)
    assert len(answer.json()["data"]["searchBooks"]) == 2
    lines = [json.loads(line) for line in live_server.log.read_text().splitlines()]
    assert not [line for line in lines if "color_message" in line or ESCAPE in json.dumps(line)]
    messages = [line["msg"] for line in lines]
    assert any(m.startswith("Uvicorn running on http://127.0.0.1:") for m in messages)
    loading = messages.index("loading the text model")
    (ready,) = [line for line in lines[loading:] if line["msg"] == "text model ready"]
    assert ready["model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert ready["seconds"] > 0


def test_the_access_example_works_as_written(tmp_path: Path) -> None:
    """It used $KEY without setting it and started a second server on the first one's port.
    Run as the README has it, on a free port instead of 8001 and with its own data dir."""
    block = next(b for b in shell_blocks(README) if "LOOKALIKE_API_KEYS" in b and "kill" in b)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "LOOKALIKE_REDIS_URL")}
    env["LOOKALIKE_DATA_DIR"] = str(tmp_path)
    done = subprocess.run(
        ["bash", "-c", block.replace("8001", port) + "\nwait\n"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    answers = json_values(done.stdout)  # curl prints each answer without a newline
    assert len(answers) == 2, done.stdout + done.stderr
    assert answers[0]["data"] == {"deletePerson": False}
    assert answers[1]["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


@pytest.fixture(scope="module")
def bench_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Served, Path]]:
    """A ``lookalike serve`` as the benchmarks' instructions start it: its own embedded Redis
    (a data directory of its own: the books bench writes the course's layout there), no API
    keys, so a local client may upload photos."""
    data = tmp_path_factory.mktemp("bench-server")
    with serving(
        data / "serve.log", REDIS_URL="", LOOKALIKE_REDIS_URL="", LOOKALIKE_DATA_DIR=str(data)
    ) as served:
        yield served, data


def run_bench(module: str, data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "LOOKALIKE_REDIS_URL")}
    env["LOOKALIKE_DATA_DIR"] = str(data)
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


def test_bench_books_runs_on_a_catalogue_beyond_the_shipped_books(
    bench_server: tuple[Served, Path], tmp_path: Path
) -> None:
    """Its baseline answered 500 for a book the course's layout (the shipped catalogue) lacks.
    A new book, a new book without a description, and a shipped book whose description
    changed: the figures are still made, on the books both sides hold alike."""
    served, data = bench_server
    shipped = {r["id"]: r for r in read_shipped().records}
    books = {
        "900001": {**shipped["9"], "id": "900001", "title": "A Lighthouse Not Shipped"},
        "900002": {**shipped["15"], "id": "900002", "description": ""},
        "26415": {**shipped["26415"], "description": "A cookbook of Basque fish stews."},
    }
    source = tmp_path / "books"
    source.mkdir()
    for book_id, record in books.items():
        (source / f"{book_id}.json").write_text(json.dumps(record), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "LOOKALIKE_REDIS_URL")}
    loaded = subprocess.run(
        [LOOKALIKE, "books", "load", "--source", str(source)],
        capture_output=True,
        text=True,
        env={**env, "LOOKALIKE_DATA_DIR": str(data)},
        timeout=300,
    )
    assert loaded.returncode == 0, loaded.stderr
    quick = ["--runs", "1", "--rounds", "1", "--seconds", "0.4", "--windows", "1"]
    done = run_bench("bench.books", data, "--url", served.base, "--concurrency", "1", *quick)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 books that are not the shipped ones" in done.stdout
    assert "GraphQL / (1): min" in done.stdout
    assert "throughput GraphQL / (2): min" in done.stdout


def test_bench_faces_reads_every_photo_from_its_dataset(
    bench_server: tuple[Served, Path], tmp_path: Path
) -> None:
    """Its 12 MP part read the ORL photos whatever --dataset said, and a dataset whose
    folders were not named like ORL's (s1, s2...) ended in numpy's IndexError."""
    served, data = bench_server
    dataset = tmp_path / "people"
    for person, orl in (("ada", "s5"), ("grace", "s6")):
        (dataset / person).mkdir(parents=True)
        for number in (1, 6, 7):
            (dataset / person / f"{number}.png").symlink_to(ORL / orl / f"{number}.png")
    quick = ["--rounds", "4", "--runs", "1", "--phone-photos", "2"]
    done = run_bench("bench.faces", data, "--url", served.base, "--dataset", str(dataset), *quick)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"identifyFace: 4 photos of {dataset}" in done.stdout
    assert "2 faces a run" in done.stdout
    assert "2/2 the same" in done.stdout


def test_bench_faces_says_what_an_empty_dataset_lacks(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    done = run_bench("bench.faces", tmp_path, "--dataset", str(tmp_path / "empty"))
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "holds no person folders with numbered images" in done.stderr
