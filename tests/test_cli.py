"""The lookalike command: tables, exit codes, one-line errors, --help everywhere."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from lookalike.services.cli import app
from lookalike.services.settings import Settings, get_settings


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


@pytest.mark.parametrize(
    "command",
    [[], ["serve"], ["books"], ["books", "load"], ["books", "similar"], ["books", "pack"]],
)
def test_every_command_has_help(runner: CliRunner, command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0
    assert "Usage" in result.stdout
