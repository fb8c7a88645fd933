"""The lookalike command: tables, exit codes, one-line errors, --help everywhere."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import pytest
import redis
from PIL import Image
from starlette.testclient import TestClient
from typer.testing import CliRunner

from lookalike.schema.cli import app
from lookalike.services.books.requests import SearchMode
from lookalike.services.core.settings import Settings, get_settings
from tests.conftest import gql
from tests.photos import ORL

LOOKALIKE = Path(sys.executable).with_name("lookalike")  # the installed command
Run = Callable[..., "subprocess.CompletedProcess[str]"]


@pytest.fixture
def runner(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("REDIS_URL", settings.redis_url or "")
    monkeypatch.setenv("LOOKALIKE_DATA_DIR", str(settings.data_dir))
    get_settings.cache_clear()
    return CliRunner()


@pytest.fixture
def lookalike(settings: Settings) -> Run:
    """The installed command in its own process, on the session's Redis."""
    env = {
        **os.environ,
        "REDIS_URL": settings.redis_url or "",
        "LOOKALIKE_DATA_DIR": str(settings.data_dir),
    }

    def run(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [LOOKALIKE, *args], capture_output=True, text=True, env=env, timeout=timeout
        )

    return run


def test_books_similar_prints_the_neighbours_as_a_table(runner: CliRunner) -> None:
    result = runner.invoke(app, ["books", "similar", "26415", "--k", "5"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    titles = ["Wayward", "Before the Devil Breaks You", "Neverwhere", "The Dead", "Last Days"]
    positions = [next(i for i, line in enumerate(lines) if t in line) for t in titles]
    assert positions == sorted(positions)
    assert "0.561" in result.stdout


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["books", "similar", "no-such-book"], 1, "no book has id 'no-such-book'"),
        (["books", "similar", "9", "--k", "0"], 1, "k must be between 1 and 100"),
        (["books", "similar", "9", "--k", "five"], 2, "Usage"),
    ],
)
def test_refused_input_exits_non_zero_with_one_line(
    runner: CliRunner, args: list[str], code: int, message: str
) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == code
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_books_search_prints_the_books_nearest_in_meaning(runner: CliRunner) -> None:
    text = "giant robots that transform into cars fight an ancient war"
    result = runner.invoke(app, ["books", "search", text, "--k", "3"])
    assert result.exit_code == 0, result.output
    assert result.stdout.count("Transformers") >= 3
    empty = runner.invoke(app, ["books", "search", "   "])
    assert empty.exit_code == 1
    assert "text must hold at least one letter or digit" in empty.stderr


def test_unreachable_redis_exits_3(runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1")
    get_settings.cache_clear()
    result = runner.invoke(app, ["books", "similar", "9"])
    assert result.exit_code == 3
    assert "cannot reach Redis" in result.stderr


def test_books_load_of_the_shipped_catalogue_is_a_no_op(runner: CliRunner) -> None:
    result = runner.invoke(app, ["books", "load"])
    assert result.exit_code == 0, result.output
    assert "1486 books: 0 added, 0 updated, 1486 unchanged" in result.stdout


def small_orl(tmp_path: Path, people: int, images: int) -> Path:
    """A few people of ORL, linked into a folder of their own."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    for n in range(1, people + 1):
        (tmp_path / f"s{n}").mkdir()
        for i in range(1, images + 1):
            (tmp_path / f"s{n}" / f"{i}.png").symlink_to(ORL / f"s{n}" / f"{i}.png")
    return tmp_path


def test_faces_enroll_adds_each_photo_once(runner: CliRunner, tmp_path: Path) -> None:
    dataset = small_orl(tmp_path, people=2, images=3)
    first = runner.invoke(app, ["faces", "enroll", str(dataset), "--images", "1-2"])
    assert first.exit_code == 0, first.output
    assert "2 people, 4 photos: 4 faces added, 0 already enrolled, 0 without a face" in first.stdout
    again = runner.invoke(app, ["faces", "enroll", str(dataset), "--images", "1,2"])
    assert "4 photos: 0 faces added, 4 already enrolled" in again.stdout
    for person in ("s1", "s2"):  # leave the session's Redis as it was
        forgot = runner.invoke(app, ["faces", "forget", person])
        assert f"forgot {person}" in forgot.stdout


def test_faces_list_and_forget_face_one_face_at_a_time(runner: CliRunner, tmp_path: Path) -> None:
    dataset = small_orl(tmp_path, people=1, images=2)
    assert runner.invoke(app, ["faces", "enroll", str(dataset), "--images", "1-2"]).exit_code == 0
    listed = runner.invoke(app, ["faces", "list", "s1"])
    assert listed.exit_code == 0, listed.output
    lines = listed.stdout.splitlines()
    assert len(lines) == 2
    for line in lines:
        assert re.fullmatch(r"[\w=-]+ \d{4}-\d\d-\d\dT[\d:.]+Z usable score [01]\.\d\d", line)
    first, second = (line.split()[0] for line in lines)
    forgot = runner.invoke(app, ["faces", "forget-face", first])
    assert forgot.exit_code == 0, forgot.output
    assert "s1 has 1 left" in forgot.stdout
    assert runner.invoke(app, ["faces", "list", "s1"]).stdout.split()[0] == second
    again = runner.invoke(app, ["faces", "forget-face", first])
    assert again.exit_code == 1
    assert "no enrolled face has id" in again.stderr
    last = runner.invoke(app, ["faces", "forget-face", second])
    assert "the person is forgotten too" in last.stdout
    gone = runner.invoke(app, ["faces", "list", "s1"])
    assert gone.exit_code == 1
    assert "nobody is enrolled as 's1'" in gone.stderr


@pytest.mark.parametrize("layout", ["hash", "json"])
def test_faces_eval_reports_the_course_protocol(
    runner: CliRunner, tmp_path: Path, layout: str
) -> None:
    dataset = small_orl(tmp_path / "orl", people=4, images=6)
    plot = tmp_path / "plots" / "distances.png"
    args = ["--dataset", str(dataset), "--enroll", "1-4", "--query", "5-6", "--layout", layout]
    result = runner.invoke(app, ["faces", "eval", *args, "--plot", str(plot)])
    assert result.exit_code == 0, result.output
    assert "closed set: 8/8 correct (100.0%)" in result.stdout
    assert "open set: 3 people enrolled, 1 strangers" in result.stdout
    assert re.search(r"strangers accepted \d+/6 ", result.stdout)
    assert re.search(r"distances: right person median/p95/max [\d./]+; strangers", result.stdout)
    assert f"layout {layout}" in result.stdout
    assert "unusable faces refused: right person accepted" in result.stdout
    # one query photo a person, degraded past each quality boundary and varied
    blurry = re.search(r"blur sigma 3% of face width +(\d)/4 +(\d)/\d +BLURRY +(\d)", result.stdout)
    assert blurry, result.stdout
    assert blurry[1] == blurry[2] == blurry[3] != "0"
    assert re.search(r"brightness x0.25 +\d/4 +\d/\d +TOO_DARK", result.stdout)
    assert re.search(r"x2 on a busy background +\d/3 +\d/3 +\d/1", result.stdout)
    assert re.search(r"\n  all +\d+/30 +\d+/30 +\d/10\n", result.stdout)
    assert f"plot: {plot}" in result.stdout
    with Image.open(plot) as drawn:  # a real picture, of a size a README can show
        assert drawn.format == "PNG"
        assert drawn.size[0] >= 800
    assert redis.Redis.from_url(os.environ["REDIS_URL"]).keys("eval-*") == []


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["serve"],
        ["books"],
        ["books", "load"],
        ["books", "similar"],
        ["books", "pack"],
        ["books", "search"],
        ["faces"],
        ["faces", "enroll"],
        ["faces", "eval"],
        ["faces", "forget"],
        ["faces", "list"],
        ["faces", "forget-face"],
    ],
)
def test_every_command_has_help(runner: CliRunner, command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0
    assert "Usage" in result.stdout
    assert "``" not in result.stdout  # docstrings are shown as written: no reST markup


# The first hour of a newcomer (issue 25): each test is a stumble seen on a fresh clone, run
# as the newcomer ran it, the installed command in its own process.


def test_faces_enroll_help_says_how_photos_are_found_and_named(lookalike: Run) -> None:
    done = lookalike("faces", "enroll", "--help")
    assert done.returncode == 0, done.stderr
    text = " ".join(done.stdout.replace("│", " ").split())
    assert "numbered" in text  # files are found by their numbers
    assert "3.jpg" in text
    assert "--name" in text


def test_faces_enroll_sets_the_name_and_counts_in_words(
    lookalike: Run, api: TestClient, tmp_path: Path
) -> None:
    dataset = small_orl(tmp_path / "one", people=1, images=2)
    (dataset / "s1").rename(dataset / "ada")
    done = lookalike("faces", "enroll", str(dataset), "--images", "1", "--name", "Ada Lovelace")
    assert done.returncode == 0, done.stderr
    assert "1 person, 1 photo: 1 face added, 0 already enrolled, 0 without a face" in done.stdout
    person = gql(api, '{ person(id: "ada") { name faceCount } }')["data"]["person"]
    assert person == {"name": "Ada Lovelace", "faceCount": 1}
    # a name is one person's: a folder of several people is refused, nothing enrolled
    several = small_orl(tmp_path / "two", people=2, images=1)
    refused = lookalike("faces", "enroll", str(several), "--name", "Ada Lovelace")
    assert refused.returncode == 1
    assert "--name" in refused.stderr
    assert "2 person folders" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert gql(api, "{ people(first: 0) { totalCount } }")["data"]["people"]["totalCount"] == 1
    assert lookalike("faces", "forget", "ada").returncode == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["faces", "forget", "nobody-here"], "nobody is enrolled as 'nobody-here'"),
        (["books", "similar", "999999999"], "no book has id '999999999'"),
        (["faces", "forget", "bad id!"], "a person id is 1 to 64"),
    ],
)
def test_an_unknown_id_exits_1_for_every_command(
    lookalike: Run, args: list[str], message: str
) -> None:
    done = lookalike(*args)
    assert (done.returncode, done.stdout) == (1, "")
    assert message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_serve_on_a_taken_port_exits_4_and_says_to_use_port(lookalike: Run) -> None:
    """It exited 3, the code for an unusable Redis, after loading everything."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        done = lookalike("serve", "--port", port, timeout=120)
    assert done.returncode == 4, done.stderr
    assert f"127.0.0.1:{port} is already in use" in done.stderr
    assert "--port" in done.stderr
    assert "Traceback" not in done.stderr


def test_lookalike_version_prints_the_installed_version(lookalike: Run) -> None:
    done = lookalike("--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"lookalike {version('lookalike')}"


@pytest.mark.parametrize(
    "command", [[], ["serve"], ["books", "convert"], ["faces", "enroll"], ["books", "search"]]
)
def test_help_shows_no_value_for_a_flag(lookalike: Run, command: list[str]) -> None:
    """Every --help listed "--help <bool>", as if it took a value."""
    done = lookalike(*command, "--help")
    assert done.returncode == 0, done.stderr
    assert "--help" in done.stdout
    assert "<bool>" not in done.stdout


def test_books_search_takes_the_apis_modes(lookalike: Run) -> None:
    keyword = lookalike("books", "search", "Engineward", "--mode", "keyword", "--k", "2")
    assert keyword.returncode == 0, keyword.stderr
    first = next(line for line in keyword.stdout.splitlines() if re.match(r"\W*1\b", line))
    assert "Engineward" in first
    assert "KEYWORD" in keyword.stdout  # the table says how it matched
    default = lookalike("books", "search", "Engineward", "--k", "2")
    assert "HYBRID" in default.stdout  # the API's default
    wrong = lookalike("books", "search", "Engineward", "--mode", "fuzzy")
    assert wrong.returncode == 2
    assert "semantic" in wrong.stderr.lower()
    for mode in SearchMode:  # the command takes every mode the API has
        assert mode.name.lower() in wrong.stderr.lower()
