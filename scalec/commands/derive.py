"""`scalec derive`: a checked rule file from the desiderata (exact rational LPs, compiler/derive.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from scalec.cli_support import err_console, guarded
from scalec.commands._output import check_output_file, write_atomic
from scalec.lazy_module import lazy_module
from scalec.parsing import parse_params

# Modules that import sympy load when the command runs, not for `--help` (which needs only the options).
sympy = lazy_module("sympy")
derivation = lazy_module("scalec.compiler.derive")
emit = lazy_module("scalec.compiler.derive_emit")
extending = lazy_module("scalec.compiler.derive_extends")


def register(app: typer.Typer) -> None:
    app.command("derive")(derive_cmd)


@guarded
def derive_cmd(
    axes: Annotated[str, typer.Option("--axes", help="Axes that scale: width[,depth,batch,duration].")] = "width",
    optimizer: Annotated[str, typer.Option("--optimizer", help="adamw | sgd | muon (Muon on hidden matrices).")] = (
        "adamw"
    ),
    gauge: Annotated[
        str,
        typer.Option(
            "--gauge",
            help="abc-symmetry gauge: table3 (no multipliers) | mup (readout multiplier) | unit (unit init, u-muP).",
        ),
    ] = "table3",
    eps: Annotated[
        str,
        typer.Option(
            "--eps",
            help="eps policy: symmetry (the `mup` package) | fixed | gradient (Complete(d)P) | blocks (CompleteP).",
        ),
    ] = "symmetry",
    decay: Annotated[str, typer.Option("--decay", help="Weight decay: coupled (torch) | independent.")] = "coupled",
    adjust_lr: Annotated[
        str, typer.Option("--adjust-lr", help="Muon's adjust_lr_fn: original | match_rms_adamw.")
    ] = "original",
    param: Annotated[list[str] | None, typer.Option("--param", help="Pin a param, e.g. alpha=1/2.")] = None,
    name: Annotated[str, typer.Option("--name", help="The derived parameterisation's name.")] = "Derived",
    extends: Annotated[
        Path | None,
        typer.Option("--extends", help="Derive the rules of the roles this file declares (`new role NAME: KIND`)."),
    ] = None,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Write the rule file here.")] = None,
) -> None:
    """Derive a parameterisation's exponents from the desiderata and write a rule file that passes `scalec check`."""
    if output is not None:
        check_output_file(output, "-o")
    params = parse_params(param)
    unknown = set(params) - {"alpha"}
    if unknown:
        raise derivation.DeriveError(
            f"error: --param {', '.join(sorted(unknown))}: derive takes only alpha (the depth exponent)"
        )
    alpha = (sympy.Rational(1, 2), sympy.Integer(1))
    if "alpha" in params:
        alpha = (sympy.Rational(params["alpha"]),) * 2
    if not name.isidentifier():
        raise derivation.DeriveError(f"error: --name {name!r} is not a name; use letters, digits and _ (e.g. MyMuP)")
    spec = derivation.DeriveSpec(
        axes=tuple(a.strip() for a in axes.split(",") if a.strip()),
        optimizer=optimizer,
        gauge=gauge,
        eps=eps,
        decay=decay,
        adjust_lr=adjust_lr,
        alpha=alpha,
        name=name,
    )
    if extends is not None:
        if output is not None and output.resolve().parent != extends.resolve().parent:
            raise derivation.DeriveError(
                f"error: -o {output}: write the derived file beside {extends} (its `extends` is resolved there)"
            )
        text = extending.derive_extends(extends, spec)
    else:
        text = emit.derive_file(spec)
    if output is None:
        typer.echo(text, nl=False)
        return
    write_atomic(output, text, "-o")
    err_console.print(f"wrote {output} ({name}; passes scalec check)")
