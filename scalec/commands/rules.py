"""`scalec rules`: the bundled rule files."""

from __future__ import annotations

import typer
from rich.table import Table

from scalec.cli_support import console, guarded
from scalec.compiler.loader import bundled_rules
from scalec.lazy_module import lazy_module

# Modules that import lark load when the command runs, not for `--help` (which needs only the options).
parser = lazy_module("scalec.dsl.parser")


def register(app: typer.Typer) -> None:
    app.command("rules")(rules_cmd)


@guarded
def rules_cmd() -> None:
    """List the bundled rule files."""
    table = Table("name", "parameterisation", "extends", "description")
    for stem, path in bundled_rules().items():
        f = parser.parse_file(path)
        doc = next((s.text for s in f.statements if type(s).__name__ == "Docstring"), "")
        table.add_row(stem, f.name, f.parent or "-", doc)
    console.print(table)
