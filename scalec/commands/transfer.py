"""`scalec transfer RULE ...`: does the best HP found at a small (proxy) shape stay best at a larger one?"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from scalec.cli_support import console, guarded
from scalec.commands._options import RuleArg, Storage, StudyName, StudyOptions, Workers, study_options, whole
from scalec.commands._progress import StudyProgress
from scalec.commands.sweep import fmt_record
from scalec.lazy_module import lazy_module
from scalec.parsing import parse_shape, parse_sizes

# Modules that import torch load when the command runs, not for `--help` (which needs only the options).
studies = lazy_module("scalec.runtime.studies.studies")
sweeps = lazy_module("scalec.runtime.studies.sweep")
transfers = lazy_module("scalec.runtime.studies.transfer")


def register(app: typer.Typer) -> None:
    """Add `transfer` to the CLI."""

    @app.command("transfer")
    @guarded
    @study_options(
        width=(Annotated[int, typer.Option(help="Width when not in the shapes.")], 128),
        depth=(Annotated[int, typer.Option(help="Depth when not in the shapes.")], 2),
        batch=(Annotated[str, typer.Option(help="Tokens per step when not in the shapes.")], "4096"),
        duration=(Annotated[str | None, typer.Option(help="Training tokens when not in the shapes.")], None),
        steps=(Annotated[int | None, typer.Option(help="Steps (width/depth studies; else use --duration).")], None),
        param=(
            Annotated[
                list[str] | None,
                typer.Option(help="Rule-file param NAME=VALUE (alpha=1/2), passed to every compared rule."),
            ],
            None,
        ),
    )
    def transfer_cmd(
        rule: RuleArg,
        hp: Annotated[
            list[str],
            typer.Option(
                help="The swept HP as a grid, e.g. eta=2^-10..2^-4:7; extra NAME=VALUE specs are fixed overrides."
            ),
        ],
        base_shape: Annotated[
            str,
            typer.Option(help="Proxy shape, e.g. n=64,L=2 (other axes: --width/--depth/--batch/--duration)."),
        ],
        target_shape: Annotated[
            str, typer.Option(help="Target shape; differs from the base along --axis, e.g. n=256.")
        ],
        axis: Annotated[
            str | None,
            typer.Option(help="width | depth | batch | duration (default: the one axis where base and target differ)."),
        ] = None,
        sizes: Annotated[
            str | None,
            typer.Option(help="Sizes along the axis, base first (default: doublings from base to target)."),
        ] = None,
        vs: Annotated[str | None, typer.Option(help="Other rules to compare, e.g. sp,mup (one panel each).")] = None,
        seeds: Annotated[int, typer.Option(parser=whole(), help="Seeds per point.")] = 1,
        out: Annotated[Path, typer.Option(help="Output dir: store/, transfer.{png,md,json}.")] = Path(
            "sweeps/transfer"
        ),
        title: Annotated[str | None, typer.Option(help="Figure title.")] = None,
        workers: Workers = 1,
        storage: Storage = None,
        study: StudyName = None,
        options: StudyOptions = None,  # type: ignore[assignment]  # the shared run settings (study_options)
    ) -> None:
        """Sweep the HP at each size for each rule; report the optimum per size (parabola in log2 space), its
        drift from the base in factors of 2, and the loss at the transferred HP vs the best at the target."""
        params = options.params()
        rule_names = [*(r.strip() for r in (vs or "").split(",") if r.strip()), rule]
        loaded = {r: sweeps.load_rules(r, params) for r in rule_names}
        base, target = parse_shape(base_shape, "--base-shape"), parse_shape(target_shape, "--target-shape")
        checked = studies.transfer_study(
            rule_names,
            hp,
            base,
            target,
            options.run_args(rule, {}),
            out,
            axis,
            parse_sizes(sizes) if sizes else None,
            seeds,
            title,
            loaded,
        )
        spec, configs = checked.spec, checked.configs
        swept, size_list, axis = spec.hp, list(spec.sizes), spec.axis
        console.print(
            f"transfer: {axis} {size_list} x {len(swept.grid())} values of {swept.name} x "
            f"{seeds} seed(s) x {len(rule_names)} rule(s) = {len(configs)} runs in {out}",
            markup=False,
            soft_wrap=True,
        )
        t0 = [time.perf_counter()]

        with StudyProgress("transfer", len(configs)) as bar:

            def report(i: int, record: Any) -> None:
                bar.advance(fmt_record(i, len(configs), record, [swept.name], t0[0]))
                t0[0] = time.perf_counter()

            results = checked.run(report, studies.shared_runner(workers, storage, study, bar.update))
        console.print(transfers.to_markdown(spec, results), markup=False, soft_wrap=True)
        console.print(
            f"wrote {out / 'transfer.png'}, {out / 'transfer.md'}, {out / 'transfer.json'}",
            markup=False,
            soft_wrap=True,
        )
        if all(r.target_best_loss is None or math.isinf(r.target_best_loss) for r in results):
            raise typer.Exit(2)
