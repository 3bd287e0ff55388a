"""`scalec fmt`: rule files formatted canonically (comments kept)."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Annotated

import typer

from scalec.cli_support import console, guarded
from scalec.commands._output import write_atomic
from scalec.lazy_module import lazy_module

# Modules that import lark load when the command runs, not for `--help` (which needs only the options).
formatter = lazy_module("scalec.dsl.formatter")
parser = lazy_module("scalec.dsl.parser")


def register(app: typer.Typer) -> None:
    app.command("fmt")(fmt_cmd)


@guarded
def fmt_cmd(
    files: Annotated[list[Path], typer.Argument(help="Rule files to format in place.")],
    check: Annotated[
        bool, typer.Option("--check", help="Change nothing; print a unified diff of what would change (exit 1).")
    ] = False,
) -> None:
    """Format rule files canonically (comments kept)."""
    changed = 0
    for path in files:
        f = parser.parse_file(path)
        text = formatter.format_file(f)
        if text == f.source:
            continue
        changed += 1
        if check:
            diff = difflib.unified_diff(
                f.source.splitlines(keepends=True), text.splitlines(keepends=True), f"{path}", f"{path} (formatted)"
            )
            typer.echo("".join(line if line.endswith("\n") else line + "\n" for line in diff), nl=False)
            console.print(f"would reformat {path}", markup=False, soft_wrap=True)
        else:
            write_atomic(path, text, "fmt")
            console.print(f"reformatted {path}", markup=False, soft_wrap=True)
    if check and changed:
        raise typer.Exit(1)
