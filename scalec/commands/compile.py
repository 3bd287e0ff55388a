"""`scalec compile`: a rule file as a standalone Python module (from the rule cache when it holds it; `--fold`
needs the full compiler, which loads on first use)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from scalec.cli_support import err_console, guarded
from scalec.commands._output import check_output_file, write_atomic
from scalec.compiler.parameterisation import rule_summary
from scalec.lazy_module import lazy_module
from scalec.parsing import parse_params

codegen = lazy_module("scalec.compiler.codegen")  # --fold only: the fold's symbolic proof needs the IR (sympy)
folding = lazy_module("scalec.compiler.folding")
pipeline = lazy_module("scalec.compiler.pipeline")


def register(app: typer.Typer) -> None:
    app.command("compile")(compile_cmd)


@guarded
def compile_cmd(
    file: Annotated[str, typer.Argument(help="Rule file or bundled name.")],
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Write the module here.")] = None,
    param: Annotated[list[str] | None, typer.Option("--param", help="Override a param, e.g. alpha=1/2.")] = None,
    fold: Annotated[bool, typer.Option("--fold", help="Fold forward multipliers into init/LR.")] = False,
    qk_norm: Annotated[bool, typer.Option("--qk-norm", help="(with --fold) the model uses QK-norm.")] = False,
) -> None:
    """Compile a rule file to a standalone Python module (stdlib only)."""
    if output is not None:
        check_output_file(output, "-o")
    summary, compiled = rule_summary(file, parse_params(param))
    name, source = summary.name, summary.source
    if fold:  # the fold's own symbolic proof needs the IR (sympy)
        ir, report = folding.fold((compiled or pipeline.compile_ir(file, parse_params(param)))[0], qk_norm=qk_norm)
        for line in report.folded:
            err_console.print(f"folded {line}")
        if any(line.startswith("residual.") for line in report.folded):
            err_console.print(
                "note: residual multipliers were folded into attn.o/mlp.down weights only: this module is exact for "
                "models whose branches end in a bias-free matrix; for branch biases use "
                "make_plan(rules, model, ..., fold=True), which folds them too"
            )
        name, source = ir.name, codegen.generate(ir)
    if output is None:
        typer.echo(source, nl=False)
        return
    write_atomic(output, source, "-o")
    err_console.print(f"wrote {output} ({name}, {len(source.splitlines())} lines)")
