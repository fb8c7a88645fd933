"""The README's configuration table, command list and GraphQL examples keep up with the code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer
from starlette.testclient import TestClient

from lookalike.schema import cli
from lookalike.services.core.settings import Settings
from tests.conftest import error_codes, gql
from tests.paths import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")


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


API_SECTION = README.split("## The GraphQL API", 1)[1].split("\n## ", 1)[0]
EXAMPLES = [
    block
    for block in re.findall(r"^```graphql\n(.*?)^```", API_SECTION, re.MULTILINE | re.DOTALL)
    if not re.match(r"\s*(type|input|enum) ", block)  # the schema's outline, not a query
]


def test_the_api_section_has_examples_of_every_argument() -> None:
    shown = "\n".join(EXAMPLES)
    for used in (
        "recommend(",
        "disliked:",
        "strategy: BEST_SCORE",
        "mode: SEMANTIC",
        "mode: KEYWORD",
        "mode: HYBRID",
        "exclude:",
        "diversity:",
        "maxPerAuthor:",
    ):
        assert used in shown, f"no GraphQL example in the README's API section uses {used}"


@pytest.mark.parametrize("example", EXAMPLES, ids=[f"example{n}" for n in range(len(EXAMPLES))])
def test_every_graphql_example_in_the_api_section_runs(api: TestClient, example: str) -> None:
    """An example answers without errors, or with the code its first line names
    (``# BAD_USER_INPUT ...``)."""
    expected = re.match(r"# ([A-Z_]+)\b", example)
    body = gql(api, example)
    if expected is None:
        assert "errors" not in body, body["errors"]
        assert body["data"]
    else:
        assert error_codes(body) == [expected.group(1)], body
