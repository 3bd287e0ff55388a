"""`scalec sweep RULE ...`: grid or random sweep of a rule's tunable HPs through a resumable run store."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from scalec.cli_support import console, guarded
from scalec.commands._options import RuleArg, Storage, StudyName, StudyOptions, Workers, study_options, whole
from scalec.commands._progress import StudyProgress
from scalec.lazy_module import lazy_module
from scalec.runtime.atomic_io import check_output_dir

# Modules that import torch load when the command runs, not for `--help` (which needs only the options).
studies = lazy_module("scalec.runtime.studies.studies")
sweeps = lazy_module("scalec.runtime.studies.sweep")


def fmt_record(i: int, n: int, record: Any, names: list[str], t0: float) -> str:
    """One progress line per run."""
    hp = " ".join(f"{k}={sweeps.fmt_value(record.config['hp'][k])}" for k in names if k in record.config["hp"])
    loss = record.loss
    value = "inf" if math.isinf(loss) else "-" if math.isnan(loss) else f"{loss:.4f}"
    how = "reused" if record.reused else f"{time.perf_counter() - t0:.0f}s"
    extra = f" {record.error.splitlines()[0]}" if record.error else ""
    return (
        f"[{i + 1}/{n}] {record.config['rule']} n={record.config['width']} L={record.config['depth']} "
        f"seed={record.config['seed']} {hp}: {value} ({record.status}, {how}){extra}"
    )


def print_rows(rows: list[Any], names: list[str], limit: int | None = None) -> None:
    """A rich table of sweep rows, best first."""
    from rich.table import Table
    from rich.text import Text

    table = Table(show_edge=False, pad_edge=False)
    for col in ["#", *names, "final val loss", "seeds", "status"]:
        table.add_column(Text(col), justify="right" if col != "status" else "left")
    for k, r in enumerate(rows[:limit] if limit else rows):
        loss = sweeps.loss_text(r)
        cells = [
            str(k + 1),
            *[sweeps.fmt_value(r.hp[n]) if n in r.hp else "" for n in names],
            loss,
            str(len(r.losses)),
            r.status,
        ]
        table.add_row(*(Text(c) for c in cells))
    console.print(table)


def register(app: typer.Typer) -> None:
    """Add `sweep` to the CLI."""

    @app.command("sweep")
    @guarded
    @study_options()
    def sweep_cmd(
        rule: RuleArg,
        hp: Annotated[
            list[str] | None,
            typer.Option(
                help="HP spec, repeatable: eta=2^-12..2^-4:7 (grid of 7, "
                "log-spaced), eta=0.001,0.01 (list), lr\\[mlp.down]=1/4..4 "
                "(range for --random), beta1=0.9 (fixed)."
            ),
        ] = None,
        random: Annotated[
            int | None,
            typer.Option("--random", help="Sample N random points instead of the grid (log-uniform on log-scale HPs)."),
        ] = None,
        seeds: Annotated[int, typer.Option(parser=whole(), help="Seeds per HP point.")] = 1,
        out: Annotated[Path, typer.Option(help="Sweep dir (run store; rerun to resume).")] = Path("sweeps/sweep"),
        sample_seed: Annotated[int, typer.Option(help="Seed of --random sampling.")] = 0,
        top: Annotated[int | None, typer.Option(help="Show only the best K rows.")] = None,
        workers: Workers = 1,
        storage: Storage = None,
        study: StudyName = None,
        options: StudyOptions = None,  # type: ignore[assignment]  # the shared run settings (study_options)
    ) -> None:
        """Train every HP point (x seeds) once; finished and diverged runs are stored under --out and never
        rerun, so a killed sweep resumes where it stopped. Prints a table (best first) and the best config.
        --model FILE.py:FUNC trains your model in the bundled loop, --objective FILE.py:FUNC with your own."""
        check_output_dir(out)  # a folder that cannot hold the store is refused before any training
        rules = sweeps.load_rules(rule, options.params())
        checked = studies.sweep_study(rules, hp or [], options.run_args(rule, {}), out, seeds, random, sample_seed)
        n, names = len(checked.configs), checked.names
        console.print(f"sweep: {n} runs ({n // seeds} points x {seeds} seeds) in {out}", markup=False, soft_wrap=True)
        t0 = [time.perf_counter()]
        with StudyProgress("sweep", n) as bar:

            def report(i: int, record: Any) -> None:
                bar.advance(fmt_record(i, n, record, names, t0[0]))
                t0[0] = time.perf_counter()

            rows = checked.run(report, studies.shared_runner(workers, storage, study, bar.update))
        print_rows(rows, names, top)
        best = sweeps.best_row(rows)
        if best is None:
            console.print("no run finished (all diverged or failed)", markup=False, soft_wrap=True)
            raise typer.Exit(2)
        hp_text = " ".join(f"--hp {k}={v:.6g}" for k, v in sorted(best.hp.items()))
        what = "objective" if options.objective else "final val loss"
        console.print(f"best: {what} {best.loss:.4f} with {hp_text}", markup=False, soft_wrap=True)
