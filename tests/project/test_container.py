"""The container files are honest: the Dockerfile lints clean, and every path, command and
setting that it and compose.yaml name exists in this repository. (No container engine runs
here, so this is what can be checked without building the image.)"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from lookalike.schema import cli
from lookalike.services.core import settings
from lookalike.services.core.settings import Settings
from tests.paths import ROOT

DOCKERFILE = (ROOT / "Dockerfile").read_text(encoding="utf-8")
COMPOSE = yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))
SETTING_NAMES = {f"LOOKALIKE_{name.upper()}" for name in Settings.model_fields} | {"REDIS_URL"}


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", DOCKERFILE)
    lines = [line.strip() for line in joined.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1])
        for line in lines
        if line and not line.startswith("#")
    ]


def test_hadolint_passes() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    result = subprocess.run(
        [str(hadolint), "Dockerfile"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_copied_path_exists() -> None:
    copies = [args for name, args in instructions() if name == "COPY" and "--from" not in args]
    assert copies
    for args in copies:
        *sources, _ = shlex.split(args)
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: not in the repository"


def test_every_lookalike_command_and_setting_it_names_exists() -> None:
    # `lookalike models` in a RUN line, ["lookalike", "serve"] in CMD
    commands = re.findall(r'\blookalike(?: |", ")([a-z][\w-]*)', DOCKERFILE)
    assert {"models", "serve"} <= set(commands)
    for command in commands:
        assert CliRunner().invoke(cli.app, [command, "--help"]).exit_code == 0, command
    for name in set(re.findall(r"\b(LOOKALIKE_[A-Z_]+|REDIS_URL)\b", DOCKERFILE)):
        assert name in SETTING_NAMES, f"{name} is not a setting"


def test_the_healthcheck_asks_readyz_on_the_served_port() -> None:
    healthcheck = next(args for name, args in instructions() if name == "HEALTHCHECK")
    assert "http://127.0.0.1:8000/readyz" in healthcheck
    assert re.search(r"LOOKALIKE_PORT=8000\b", DOCKERFILE)
    assert "EXPOSE 8000" in DOCKERFILE
    assert any(name == "USER" and args != "root" for name, args in instructions())


def test_compose_runs_the_api_against_redis_8_with_a_volume() -> None:
    services = COMPOSE["services"]
    assert re.fullmatch(r"redis:8(\.\d+)*", services["redis"]["image"])
    assert any(v.endswith(":/data") for v in services["redis"]["volumes"])
    assert set(COMPOSE["volumes"]) >= {"redis-data"}
    api = services["api"]
    assert api["build"] == "."
    assert api["environment"]["REDIS_URL"].startswith("redis://redis:")
    assert set(api["environment"]) <= SETTING_NAMES
    assert api["depends_on"]["redis"]["condition"] == "service_healthy"
    healthcheck = " ".join(services["redis"]["healthcheck"]["test"])
    assert "search" in healthcheck  # the modules the API needs
    assert "ReJSON" in healthcheck


def test_the_models_the_image_bakes_load_with_the_network_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the Docker build runs (``lookalike models`` with HF_HUB_OFFLINE=1)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("LOOKALIKE_DATA_DIR", str(tmp_path))
    settings.get_settings.cache_clear()
    try:
        result = CliRunner().invoke(cli.app, ["models"])
    finally:
        settings.get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert "384-d" in result.output
    assert "face model: Dlib ResNet" in result.output


def test_the_wheel_the_image_installs_carries_the_catalogue(tmp_path: Path) -> None:
    """The image runs `pip install .` (not editable, as CI does): its wheel must hold data/."""
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path), str(ROOT)],
        check=True, capture_output=True,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("lookalike-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in ("books.jsonl", "book_vectors.npy", "manifest.json", "LICENSE-books"):
        assert f"lookalike/data/{name}" in names
    for package in ("schema", "resolvers", "services"):
        assert f"lookalike/{package}/__init__.py" in names
    assert not any(n.startswith(("tests/", "bench/", "services/")) for n in names)
