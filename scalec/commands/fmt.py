"""`scalec fmt`: rule files formatted canonically (comments kept)."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Annotated

import typer

from scalec.cli_support import console, guarded
from scalec.commands._output import write_atomic
from scalec.dsl.formatter import format_file
from scalec.dsl.parser import parse_file


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
        f = parse_file(path)
        text = format_file(f)
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
