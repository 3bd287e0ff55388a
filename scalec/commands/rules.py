"""Rule-file commands: check, compile, fmt, show, rules."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from scalec.cli_support import console, err_console, format_error, guarded
from scalec.errors import ScalecError
from scalec.parsing import parse_hp_specs, parse_hp_values, parse_int, parse_params


class OutputPathError(ScalecError):
    """An output path that cannot be written."""


def register(app: typer.Typer) -> None:
    app.command("rules")(rules_cmd)
    app.command("check")(check_cmd)
    app.command("compile")(compile_cmd)
    app.command("fmt")(fmt_cmd)
    app.command("show")(show_cmd)


@guarded
def rules_cmd() -> None:
    """List the bundled rule files."""
    from scalec.compiler.loader import bundled_rules
    from scalec.dsl.parser import parse_file

    table = Table("name", "parameterisation", "extends", "description")
    for stem, path in bundled_rules().items():
        f = parse_file(path)
        doc = next((s.text for s in f.statements if type(s).__name__ == "Docstring"), "")
        table.add_row(stem, f.name, f.parent or "-", doc)
    console.print(table)


@guarded
def check_cmd(
    files: Annotated[list[str], typer.Argument(help="Rule files or bundled names.")],
    param: Annotated[list[str] | None, typer.Option("--param", help="Override a param, e.g. alpha=1/2.")] = None,
) -> None:
    """Parse, resolve and check rule files (symbols, identity at base, domains, desiderata, expectations); exit 1
    when a file has an error or breaks one of its `expect` lines."""
    from scalec.compiler.parameterisation import rule_summary

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


@guarded
def compile_cmd(
    file: Annotated[str, typer.Argument(help="Rule file or bundled name.")],
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Write the module here.")] = None,
    param: Annotated[list[str] | None, typer.Option("--param", help="Override a param, e.g. alpha=1/2.")] = None,
    fold: Annotated[bool, typer.Option("--fold", help="Fold forward multipliers into init/LR.")] = False,
    qk_norm: Annotated[bool, typer.Option("--qk-norm", help="(with --fold) the model uses QK-norm.")] = False,
) -> None:
    """Compile a rule file to a standalone Python module (stdlib only)."""
    from scalec.compiler.parameterisation import rule_summary

    if output is not None:
        check_output_file(output, "-o")
    summary, compiled = rule_summary(file, parse_params(param))
    name, source = summary.name, summary.source
    if fold:  # the fold's own symbolic proof needs the IR (sympy)
        from scalec.compiler.codegen import generate
        from scalec.compiler.folding import fold as fold_ir
        from scalec.compiler.pipeline import compile_ir

        ir, report = fold_ir((compiled or compile_ir(file, parse_params(param)))[0], qk_norm=qk_norm)
        for line in report.folded:
            err_console.print(f"folded {line}")
        if any(line.startswith("residual.") for line in report.folded):
            err_console.print(
                "note: residual multipliers were folded into attn.o/mlp.down weights only: this module is exact for "
                "models whose branches end in a bias-free matrix; for branch biases use "
                "make_plan(rules, model, ..., fold=True), which folds them too"
            )
        name, source = ir.name, generate(ir)
    if output is None:
        typer.echo(source, nl=False)
        return
    write_atomic(output, source, "-o")
    err_console.print(f"wrote {output} ({name}, {len(source.splitlines())} lines)")


def check_output_file(path: Path, option: str) -> None:
    """Refuse, before any work, an output path that is a folder or lies in a folder that does not exist."""
    if path.is_dir():
        raise OutputPathError(f"error: {option} {path} is a folder; give a file path such as {path / 'module.py'}")
    if not path.parent.is_dir():
        raise OutputPathError(f"error: {option} {path}: the folder {path.parent} does not exist; create it first")


def write_atomic(path: Path, text: str, option: str) -> None:
    """Write through a temporary file beside `path`, then rename; on failure nothing is left behind."""
    from scalec.runtime.atomic_io import WriteError, write_text_atomic

    check_output_file(path, option)
    try:
        write_text_atomic(path, text, fix=f"pass a writable {option} path")
    except WriteError as exc:
        raise OutputPathError(f"{exc}".replace("error: cannot write", f"error: {option}: cannot write", 1)) from None


@guarded
def fmt_cmd(
    files: Annotated[list[Path], typer.Argument(help="Rule files to format in place.")],
    check: Annotated[
        bool, typer.Option("--check", help="Change nothing; print a unified diff of what would change (exit 1).")
    ] = False,
) -> None:
    """Format rule files canonically (comments kept)."""
    import difflib

    from scalec.dsl.formatter import format_file
    from scalec.dsl.parser import parse_file

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


def _require_domains(role: str, per_block: list) -> None:
    """Refuse, as make_plan does, a value outside its HP domain (compiler/domain.py): hp values given outside
    the file's declared ranges can leave the region `scalec check` proved."""
    from scalec.compiler.domain import first_violation

    for block, values in enumerate(per_block):
        bad = first_violation(values)
        if bad is not None:
            kind, value, why = bad
            where = f" on block {block}" if len(per_block) > 1 else ""
            raise ScalecError(
                f"error: role '{role}' gets {kind} = {value:.6g}{where} at this shape, {why}; check the hp values "
                "(keep them in the file's declared ranges) and the shape"
            )


@guarded
def show_cmd(
    file: Annotated[str, typer.Argument(help="Rule file or bundled name.")],
    width: Annotated[str | None, typer.Option("--width", "-n", help="d_model, e.g. 1024 or 2^10")] = None,
    depth: Annotated[str | None, typer.Option("--depth", "-L", help="residual blocks")] = None,
    batch: Annotated[str | None, typer.Option("--batch", "-B", help="tokens per step, e.g. 2^14")] = None,
    duration: Annotated[str | None, typer.Option("--duration", "-D", help="training tokens, e.g. 16M")] = None,
    head_dim: Annotated[str | None, typer.Option("--head-dim", help="attention head dim")] = None,
    param: Annotated[list[str] | None, typer.Option("--param", help="Override a param, e.g. alpha=1/2.")] = None,
    hp: Annotated[list[str] | None, typer.Option("--hp", help="Override an HP, e.g. eta=2^-7.")] = None,
) -> None:
    """Every role x HP value at a shape, with its scaling exponents."""
    from scalec.compiler.parameterisation import load

    options = {"n": ("--width", width), "L": ("--depth", depth), "B": ("--batch", batch)}
    options |= {"D": ("--duration", duration), "d_head": ("--head-dim", head_dim)}
    axes = {axis: parse_int(text, flag) for axis, (flag, text) in options.items() if text is not None}
    hp_specs, params = parse_hp_specs(hp), parse_params(param)
    p = load(file, params)
    shape = p.shape(**axes)
    hparams = p.hparams(**parse_hp_values(hp_specs, p, "show"))
    try:
        p.module.check_shape(shape, hparams)  # the region at these HPs (p.shape checked it at the defaults)
    except ValueError as exc:
        raise ScalecError(f"error: {exc}") from None
    exponent = p.summary.exponent  # (subject, hp) -> symbolic exponent per axis, as exponent_table gives them
    t = Table("role", "HP", "value", "m_N", "m_L", "m_B", "m_D")
    layered = getattr(p.module, "LAYERED_ROLES", frozenset())
    for role in p.module.ROLES:
        # rules in the block index l (a depth profile, (1 + l) / L): the first and the last block's values
        every = range(max(1, round(shape.L))) if role in layered else (None,)
        all_blocks = [p.role_hparams(role, shape, hparams, layer=b) for b in every]  # refused in one line
        _require_domains(role, all_blocks)  # every block, not only the two shown (as make_plan would refuse)
        per_block = [all_blocks[0], all_blocks[-1]] if role in layered else all_blocks
        values = per_block[0]
        for kind in ("init_std", "lr", "weight_decay", "eps", "beta1", "beta2", "momentum", "mult"):
            if getattr(values, kind, None) is None:
                continue  # a target this role's optimizer does not have
            label = f"1-{kind}" if kind.startswith("beta") or kind == "momentum" else kind
            row = exponent(role, label)
            shown = dict.fromkeys(f"{getattr(v, kind):.6g}" for v in per_block)
            text = " .. ".join(shown) + (" (blocks 0 .. L-1)" if len(shown) > 1 else "")
            # weight decay in the rule's own convention: name it when it is not torch's (plan's wd (torch) = / lr)
            decay = getattr(values, "decay", "coupled")
            name = f"{kind} ({decay})" if kind == "weight_decay" and decay != "coupled" else kind
            t.add_row(role, name, text, *(row[a] for a in ("n", "L", "B", "D")))
        t.add_section()
    sites = p.sites(shape, hparams).as_dict()
    for site, value in sites.items():
        row = exponent(site, "site")
        t.add_row(site, "site", f"{value:.6g}", *(row[a] for a in ("n", "L", "B", "D")))
    console.print(
        f"[bold]{p.name}[/bold] at n={shape.n:g} L={shape.L:g} B={shape.B:g} D={shape.D:g} "
        f"d_head={shape.d_head:g}  (base n={p.module.BASE.n:g} L={p.module.BASE.L:g} "
        f"B={p.module.BASE.B:g} D={p.module.BASE.D:g}); steps={p.module.steps(shape)}"
    )
    console.print(t)
    for line in p.summary.declared_lines:
        console.print(line, markup=False)
    for line in p.summary.region:
        console.print(f"feasible region: {line}", markup=False)
