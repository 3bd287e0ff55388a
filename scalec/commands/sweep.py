"""`scalec sweep RULE ...`: grid or random sweep of a rule's tunable HPs through a resumable run store."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from scalec.cli_support import console, guarded
from scalec.commands._options import (
    Batch,
    Corpus,
    Depth,
    Device,
    Duration,
    EvalBatches,
    EvalEvery,
    HeadDim,
    Params,
    QkNorm,
    RuleArg,
    SeqLen,
    Steps,
    Width,
    run_args,
    whole,
)
from scalec.commands._progress import StudyProgress
from scalec.errors import ScalecError
from scalec.runtime.atomic_io import check_output_dir, write_text_atomic


class SweepArgsError(ScalecError):
    """A malformed sweep/search/transfer argument."""


def load_rules(rule: str, params: dict[str, str]) -> Any:
    """`scalec.load` the rule (one-line error when the compiler is not available)."""
    import scalec

    if not hasattr(scalec, "load"):
        raise SweepArgsError("error: this scalec build has no rule compiler (scalec.load); reinstall scalec")
    return scalec.load(rule, params=params or None)


def split_hp_specs(items: list[str] | None, rules: Any) -> tuple[dict[str, float], list[Any]]:
    """`--hp` specs checked against the rule: single values become fixed overrides, the rest are swept."""
    from scalec.parsing import parse_hp_specs
    from scalec.runtime.studies.hp_grid import resolve_specs

    specs = resolve_specs(parse_hp_specs(items), rules.module.HP_SPACE, rules.name)
    fixed = {s.name: s.values[0] for s in specs if not s.is_range and len(s.values) == 1}
    return fixed, [s for s in specs if s.is_range or len(s.values) > 1]


def check_shapes(rules: Any, configs: list[dict[str, Any]]) -> None:
    """Every config's shape inside the rule's declared axis ranges (duration from steps when needed)."""
    from scalec.runtime.studies.sweep import check_shape

    for c in configs:
        shaped, labels = dict(c), {}
        if shaped.get("duration") is None and shaped.get("steps") is not None:
            shaped["duration"] = int(shaped["steps"]) * int(shaped["batch"])
            labels["duration"] = f"--steps {shaped['steps']} (= {shaped['duration']} tokens at --batch {c['batch']})"
        check_shape(rules, shaped, labels)


def fmt_record(i: int, n: int, record: Any, names: list[str], t0: float) -> str:
    """One progress line per run."""
    from scalec.runtime.studies.sweep import fmt_value

    hp = " ".join(f"{k}={fmt_value(record.config['hp'][k])}" for k in names if k in record.config["hp"])
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

    from scalec.runtime.studies.sweep import fmt_value, loss_text

    table = Table(show_edge=False, pad_edge=False)
    for col in ["#", *names, "final val loss", "seeds", "status"]:
        table.add_column(Text(col), justify="right" if col != "status" else "left")
    for k, r in enumerate(rows[:limit] if limit else rows):
        loss = loss_text(r)
        cells = [
            str(k + 1),
            *[fmt_value(r.hp[n]) if n in r.hp else "" for n in names],
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
        width: Width = 128,
        depth: Depth = 2,
        batch: Batch = "4096",
        duration: Duration = None,
        steps: Steps = None,
        seq_len: SeqLen = 128,
        head_dim: HeadDim = 32,
        qk_norm: QkNorm = False,
        param: Params = None,
        seed: Annotated[int, typer.Option(help="First seed.")] = 0,
        sample_seed: Annotated[int, typer.Option(help="Seed of --random sampling.")] = 0,
        device: Device = "auto",
        corpus: Corpus = None,
        eval_every: EvalEvery = None,
        eval_batches: EvalBatches = None,
        top: Annotated[int | None, typer.Option(help="Show only the best K rows.")] = None,
    ) -> None:
        """Train every HP point (x seeds) once; finished and diverged runs are stored under --out and never
        rerun, so a killed sweep resumes where it stopped. Prints a table (best first) and the best config."""
        from scalec.parsing import parse_params
        from scalec.runtime.studies.run_store import RunStore
        from scalec.runtime.studies.sweep import (
            SweepSpec,
            best_row,
            rows_markdown,
            run_sweep,
            summarize,
            sweep_configs,
            train_run_fn,
        )

        if seeds < 1 or (random is not None and random < 1):
            raise SweepArgsError("error: --seeds and --random must be at least 1")
        params = parse_params(param)
        rules = load_rules(rule, params)
        fixed_hp, swept = split_hp_specs(hp, rules)
        if random is None:
            for s in swept:
                s.grid()  # a range without a point count is an error before anything runs
        fixed = run_args(
            rule,
            width=width,
            depth=depth,
            batch=batch,
            duration=duration,
            steps=steps,
            seq_len=seq_len,
            head_dim=head_dim,
            qk_norm=qk_norm,
            params=params,
            hp=fixed_hp,
            seed=seed,
            device=device,
            corpus=corpus,
            eval_every=eval_every,
            eval_batches=eval_batches,
        ).config()
        configs = sweep_configs(SweepSpec(fixed, swept, random, seeds, sample_seed))
        check_shapes(rules, configs)
        names = [s.name for s in swept]
        check_output_dir(out)  # a folder that cannot hold the store is refused before any training
        store = RunStore(out)
        console.print(
            f"sweep: {len(configs)} runs ({len(configs) // seeds} points x {seeds} seeds) in {out}",
            markup=False,
            soft_wrap=True,
        )
        t0 = [time.perf_counter()]
        with StudyProgress("sweep", len(configs)) as bar:

            def report(i: int, record: Any) -> None:
                bar.advance(fmt_record(i, len(configs), record, names, t0[0]))
                t0[0] = time.perf_counter()

            records = run_sweep(configs, store, train_run_fn, report)
        rows = summarize(records)
        print_rows(rows, names, top)
        write_text_atomic(out / "sweep.md", rows_markdown(rows, names) + "\n")
        best = best_row(rows)
        if best is None:
            console.print("no run finished (all diverged or failed)", markup=False, soft_wrap=True)
            raise typer.Exit(2)
        hp_text = " ".join(f"--hp {k}={v:.6g}" for k, v in sorted(best.hp.items()))
        console.print(f"best: final val loss {best.loss:.4f} with {hp_text}", markup=False, soft_wrap=True)
