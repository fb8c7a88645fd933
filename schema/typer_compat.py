"""Every use lookalike makes of typer's undocumented parts.

typer 0.29 shows each option's type beside it in --help, for flags too: ``--help <bool>``,
``--force <bool>``, as if they took a value. A flag's type is hidden here, so --help lists
``--force`` alone, as click and every other CLI do.

Relied on: ``typer.core.TyperOption``, its ``is_flag`` attribute, and its method
``display_type_rich(ctx)``, which both the rich and the plain help formatters call for the
type column (a None hides it). Checked with typer 0.29.2 (pyproject.toml bounds it below
0.30); older versions without the method showed no type, and are left as they are.
tests/project/test_cli.py (``test_help_shows_no_value_for_a_flag``) fails when this breaks.
"""

from __future__ import annotations

from typing import Any

from typer.core import TyperOption


def hide_flag_types() -> None:
    """Flags show no type in --help (once per process; calling it again changes nothing)."""
    shown = getattr(TyperOption, "display_type_rich", None)
    if shown is None or getattr(shown, "hides_flags", False):
        return

    def display_type_rich(self: TyperOption, ctx: Any) -> str | None:
        return None if self.is_flag else shown(self, ctx)

    display_type_rich.hides_flags = True  # type: ignore[attr-defined]
    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]
