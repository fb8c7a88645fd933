"""The README's configuration table and command list keep up with the code."""

from __future__ import annotations

import re
from pathlib import Path

import typer

from lookalike.schema import cli
from lookalike.services.settings import Settings

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def test_every_setting_is_in_the_configuration_table() -> None:
    table = README.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([A-Z_]+)` \|", table, re.MULTILINE))
    for name, field in Settings.model_fields.items():
        aliases = getattr(field.validation_alias, "choices", None) or []
        names = {f"LOOKALIKE_{name.upper()}", *(a for a in aliases if a.isupper())}
        assert names & documented, f"{name} is missing from the README's configuration table"


def test_every_command_is_in_the_command_list() -> None:
    group = typer.main.get_group(cli.app)
    for name, command in group.commands.items():
        subcommands = getattr(command, "commands", None)
        for full in [f"{name} {sub}" for sub in subcommands] if subcommands else [name]:
            assert f"lookalike {full}" in README, f"`lookalike {full}` is not in the README"
