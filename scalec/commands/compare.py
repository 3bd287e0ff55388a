"""`scalec compare A B [C ...]`: side-by-side exponents, desiderata and equivalence of rule files, optionally
with empirical coordinate checks, written as report.md + a self-contained report.html."""

from __future__ import annotations

import re
import shlex
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from scalec.cli_support import console, guarded
from scalec.commands._options import real, whole
from scalec.commands._progress import StudyProgress
from scalec.commands.coord_check import (
    CoordCheckArgsError,
    build_config,
    hp_overrides,
    model_subject,
    run_and_save,
    torch_threads,
    verdict_table,
)
from scalec.lazy_module import lazy_module
from scalec.parsing import parse_params

# Modules that import torch or sympy load when the command runs, not for `--help` (which needs only the options).
comparison = lazy_module("scalec.runtime.studies.comparison")
coord = lazy_module("scalec.runtime.studies.coord_check")
coord_runs = lazy_module("scalec.runtime.studies.coord_runs")
subjects = lazy_module("scalec.runtime.studies.coord_subject")
report = lazy_module("scalec.runtime.studies.report")


def exponent_table_rich(cmp: Any) -> Any:
    """Rich table: subject x HP rows, one column of (m_N, m_L, m_B, m_D) exponents per file."""
    from rich.table import Table

    table = Table(title=comparison.EXPONENT_LEGEND, title_justify="left")
    table.add_column("subject")
    table.add_column("HP")
    for s in cmp.sections:
        table.add_column(s.label)
    for subject, hp, cells, differs in comparison.exponent_grid(cmp.sections):
        table.add_row(subject, hp, *cells, style="yellow" if differs else None)
    return table


def desiderata_table_rich(cmp: Any) -> Any:
    """Rich table: desiderata checks x files, pass/FAIL/n/a, with the width and depth classes on top."""
    from rich.table import Table

    table = Table(title="desiderata", title_justify="left")
    table.add_column("area")
    table.add_column("check")
    for s in cmp.sections:
        table.add_column(s.label)
    table.add_row("width", "class", *[s.desiderata.width_class for s in cmp.sections])
    table.add_row("depth", "class", *[s.desiderata.depth_class for s in cmp.sections], end_section=True)
    styles = {"pass": "green", "FAIL": "bold red", "n/a": "dim", "-": "dim"}
    for area, name, words in comparison.verdict_grid(cmp.sections):
        table.add_row(area, name, *[f"[{styles[w]}]{w}[/]" for w in words])
    return table


def _folder(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", label)


def _run_shared(cmp: Any, configs: list[Any], data: tuple[Any, Any], out: Path, workers: int) -> None:
    """The bundled GPT's coordinate checks of every section (runtime/studies/coord_runs.py), saved per section."""
    checks = [(s.rules, cfg) for s, cfg in zip(cmp.sections, configs, strict=True)]
    outs = [out / _folder(s.label) for s in cmp.sections]
    with StudyProgress("coord-checks", 1) as bar:
        results, plots, shared = coord_runs.run_coord_checks(
            checks, *data, workers=workers, progress=bar.update, outs=outs
        )
    console.print(
        f"coordinate checks: {len(shared.distinct)} distinct training points of {shared.total} "
        f"({shared.total - len(shared.distinct)} shared by identical plans), {workers} worker process(es)",
        markup=False,
    )
    for s, result, plot in zip(cmp.sections, results, plots, strict=True):
        s.coord, s.plots = result, plot


def register(app: typer.Typer) -> None:
    """Add `compare` to the CLI."""

    @app.command("compare")
    @guarded
    def compare(
        rules: Annotated[list[str], typer.Argument(help="Two or more bundled rule names or .scale paths.")],
        empirical: Annotated[bool, typer.Option(help="Also run coordinate checks and plot them.")] = False,
        widths: Annotated[str, typer.Option(help="Widths of the width sweep.")] = "64,128,256,512",
        depths: Annotated[str, typer.Option(help="Depths of the depth sweep.")] = "2,4,8,16",
        base_width: Annotated[
            int | None, typer.Option(help="Width of the depth sweep (default: min of --widths).")
        ] = None,
        base_depth: Annotated[
            int | None, typer.Option(help="Depth of the width sweep (default: min of --depths).")
        ] = None,
        steps: Annotated[int, typer.Option(help="Training steps per model.")] = 10,
        seeds: Annotated[int, typer.Option(help="Seeds averaged per size.")] = 3,
        batch: Annotated[int, typer.Option(help="Sequences per step.")] = 8,
        seq_len: Annotated[int, typer.Option(help="Tokens per sequence.")] = 64,
        head_dim: Annotated[
            int | None,
            typer.Option(parser=whole(), help="Attention head dimension (default 32; with --model, the model's own)."),
        ] = None,
        lr: Annotated[
            float | None, typer.Option(parser=real(), help="Coordinate checks' base lr eta (needs --empirical).")
        ] = None,
        hp: Annotated[
            list[str] | None,
            typer.Option(help="HP override NAME=VALUE for every file's coordinate checks (needs --empirical; repeat)."),
        ] = None,
        param: Annotated[list[str] | None, typer.Option(help="Rule-file param NAME=VALUE for every file.")] = None,
        corpus: Annotated[
            str | None, typer.Option(help="Text file/folder (default: the fetched default corpus).")
        ] = None,
        threads: Annotated[int, typer.Option(help="torch CPU threads; 1 is fastest for these tiny models.")] = 1,
        out: Annotated[Path | None, typer.Option(help="Report folder (default: report/ with --empirical).")] = None,
        model: Annotated[
            str | None, typer.Option(help="With --empirical: check FILE.py:FUNC(width, depth) instead of the GPT.")
        ] = None,
        roles: Annotated[Path | None, typer.Option(help="JSON {glob: role} binding --model's parameters.")] = None,
        workers: Annotated[
            int, typer.Option(parser=whole(), help="Processes training the bundled GPT's coordinate checks.")
        ] = 2,
    ) -> None:
        """Compare rule files symbolically (and empirically with --empirical); write report.md/.html."""
        if len(rules) < 2:
            raise CoordCheckArgsError("error: compare needs at least two rule files, e.g. scalec compare sp mup")
        if not empirical and (hp or lr is not None):
            raise CoordCheckArgsError(
                "error: --hp and --lr set the coordinate checks' HPs and need --empirical; "
                "the symbolic comparison does not depend on HP values"
            )
        if (model or roles) and not empirical:
            raise CoordCheckArgsError("error: --model/--roles are for the coordinate checks; add --empirical")

        start = time.perf_counter()
        if out is not None or empirical:
            report.ensure_report_dir(out or Path("report"))  # an unwritable --out fails before any work
        cmp = comparison.analyse(rules, parse_params(param))
        if empirical:  # fail fast, before printing anything, on bad sizes, HPs or a missing corpus
            configs = [
                build_config(
                    widths,
                    depths,
                    base_width,
                    base_depth,
                    steps,
                    seeds,
                    batch,
                    seq_len,
                    head_dim,
                    hp_overrides(s.rules, lr, hp),
                    model,
                )
                for s in cmp.sections
            ]
            subject = model_subject(model, roles)
            data = coord.load_batches(corpus, configs[0])
        words = ["scalec", "compare", *rules, *[f"--param={p}" for p in param or []]]
        if empirical:
            words += [
                "--empirical",
                f"--widths={widths}",
                f"--depths={depths}",
                f"--steps={steps}",
                f"--seeds={seeds}",
                f"--batch={batch}",
                f"--seq-len={seq_len}",
                *[f"--head-dim={head_dim}"] * (head_dim is not None),
                *([f"--lr={lr:g}"] if lr is not None else []),  # else each rule's own default eta
                *[f"--hp={h}" for h in hp or []],
            ]
            words += [f"--base-width={base_width}"] * (base_width is not None)
            words += [f"--base-depth={base_depth}"] * (base_depth is not None)
            words += [f"--corpus={corpus}"] * (corpus is not None)
            words += [f"--model={model}"] * (model is not None) + [f"--roles={roles}"] * (roles is not None)
        cmp.command = " ".join(shlex.quote(w) for w in words)
        console.print(exponent_table_rich(cmp))
        console.print(desiderata_table_rich(cmp))
        for s in cmp.sections:
            for line in comparison.failure_lines(s):
                console.print(f"  {s.label} fails {line}", markup=False)
        console.print("equivalence modulo each optimizer's abc-symmetry:", markup=False)
        for a, b, q in cmp.equivalences:
            console.print(f"  {a} vs {b}: {comparison.equivalence_text(q, limit=2)}", markup=False)
        console.print("base shapes: " + "; ".join(f"{s.label} {s.base_shape}" for s in cmp.sections), markup=False)
        console.print("which one for which scaling:", markup=False)
        for line in comparison.summary_lines(cmp.sections):
            console.print(f"  {line}", markup=False)
        if empirical:
            out = out or Path("report")
            results = []
            with torch_threads(threads):
                if subject is None:  # the bundled GPT: every distinct plan trained once, in worker processes
                    _run_shared(cmp, configs, data, out, workers)
                else:
                    for s, cfg in zip(cmp.sections, configs, strict=True):
                        s.coord, s.plots = run_and_save(s.rules, cfg, data, out / _folder(s.label), s.label, subject)
                        # the binding (roles, folds, hooks) next to each rule's check
                        subjects.record_binding(
                            out / _folder(s.label) / "coord_check.json", subject, s.rules, cfg, model
                        )
            results = [(s.label, s.coord) for s in cmp.sections]
            for sweep in results[0][1].sweeps:
                console.print(verdict_table(results, sweep))
            console.print(f"{results[0][1].config.thresholds()}.", markup=False)
        if out is not None:
            md, page = report.write_report(cmp, out)
            console.print(f"wrote {md} and {page} in {time.perf_counter() - start:.1f} s", markup=False)
