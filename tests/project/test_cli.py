"""The lookalike command: tables, exit codes, one-line errors, --help everywhere."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import redis
from PIL import Image
from typer.testing import CliRunner

from lookalike.schema.cli import app
from lookalike.services.core.settings import Settings, get_settings
from tests.photos import ORL


@pytest.fixture
def runner(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("REDIS_URL", settings.redis_url or "")
    monkeypatch.setenv("LOOKALIKE_DATA_DIR", str(settings.data_dir))
    get_settings.cache_clear()
    return CliRunner()


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
    assert "nobody is enrolled as s1" in runner.invoke(app, ["faces", "forget", "s1"]).stdout


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
    assert re.search(r"\n  all +\d+/27 +\d+/27 +\d/9\n", result.stdout)
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
    ],
)
def test_every_command_has_help(runner: CliRunner, command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0
    assert "Usage" in result.stdout
    assert "``" not in result.stdout  # docstrings are shown as written: no reST markup
