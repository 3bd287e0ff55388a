"""`scalec check`: parse, resolve and check rule files (from the rule cache when it holds them)."""

from __future__ import annotations

from typing import Annotated

import typer

from scalec.cli_support import console, err_console, format_error, guarded
from scalec.compiler.parameterisation import rule_summary
from scalec.errors import ScalecError
from scalec.parsing import parse_params


def register(app: typer.Typer) -> None:
    app.command("check")(check_cmd)


@guarded
def check_cmd(
    files: Annotated[list[str], typer.Argument(help="Rule files or bundled names.")],
    param: Annotated[list[str] | None, typer.Option("--param", help="Override a param, e.g. alpha=1/2.")] = None,
) -> None:
    """Parse, resolve and check rule files (symbols, identity at base, domains, desiderata, expectations); exit 1
    when a file has an error or breaks one of its `expect` lines."""
    failed = 0
    for f in files:
        try:
            s, _ = rule_summary(f, parse_params(param))  # the rule cache holds only rules that passed every check
        except ScalecError as exc:
            err_console.print(format_error(exc), markup=False)
            failed += 1
            continue
        failed += s.broken
        status = "[red]FAIL[/red]" if s.broken else "[green]ok[/green]"
        console.print(
            f"{status} {f}: {s.name} ({' -> '.join(s.lineage)}); width: {s.width_class}; depth: {s.depth_class}"
        )
        for line in s.check_lines:
            console.print(f"  {line}", markup=False)
        for line in s.region:
            console.print(f"  region: {line}", markup=False)
        for w in s.warnings:
            console.print(f"  [yellow]warning[/yellow]: {w}", markup=True)
    if failed:
        raise typer.Exit(1)
