"""`scalec transfer RULE ...`: does the best HP found at a small (proxy) shape stay best at a larger one?"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from scalec.cli_support import console, guarded
from scalec.commands._options import Corpus, Device, EvalBatches, EvalEvery, HeadDim, RuleArg, SeqLen, run_args, whole
from scalec.commands._progress import StudyProgress
from scalec.commands.sweep import SweepArgsError, check_shapes, fmt_record, load_rules


def doubling_sizes(base: int, target: int) -> list[int]:
    """base, 2 base, 4 base, ... up to target (target always included)."""
    sizes, s = [], base
    while s < target:
        sizes.append(s)
        s *= 2
    return [*sizes, target]


def register(app: typer.Typer) -> None:
    """Add `transfer` to the CLI."""

    @app.command("transfer")
    @guarded
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
        width: Annotated[int, typer.Option(help="Width when not in the shapes.")] = 128,
        depth: Annotated[int, typer.Option(help="Depth when not in the shapes.")] = 2,
        batch: Annotated[str, typer.Option(help="Tokens per step when not in the shapes.")] = "4096",
        duration: Annotated[str | None, typer.Option(help="Training tokens when not in the shapes.")] = None,
        steps: Annotated[int | None, typer.Option(help="Steps (width/depth studies; else use --duration).")] = None,
        seq_len: SeqLen = 128,
        head_dim: HeadDim = 32,
        param: Annotated[
            list[str] | None,
            typer.Option(help="Rule-file param NAME=VALUE (alpha=1/2), passed to every compared rule."),
        ] = None,
        seed: Annotated[int, typer.Option(help="First seed.")] = 0,
        device: Device = "auto",
        corpus: Corpus = None,
        eval_every: EvalEvery = None,
        eval_batches: EvalBatches = None,
        title: Annotated[str | None, typer.Option(help="Figure title.")] = None,
    ) -> None:
        """Sweep the HP at each size for each rule; report the optimum per size (parabola in log2 space), its
        drift from the base in factors of 2, and the loss at the transferred HP vs the best at the target."""
        from scalec.parsing import parse_hp_specs, parse_int, parse_params, parse_shape, parse_sizes
        from scalec.runtime.studies.hp_grid import resolve_specs
        from scalec.runtime.studies.transfer import TransferSpec, run_transfer, to_markdown, transfer_configs

        params = parse_params(param)
        rule_names = [*(r.strip() for r in (vs or "").split(",") if r.strip()), rule]
        loaded = {r: load_rules(r, params) for r in rule_names}
        base, target = parse_shape(base_shape, "--base-shape"), parse_shape(target_shape, "--target-shape")
        defaults = {
            "width": width,
            "depth": depth,
            "batch": parse_int(batch, "--batch"),
            "duration": parse_int(duration, "--duration") if duration else None,
        }
        shape = {**defaults, **base}
        if axis is None:
            differing = [f for f in target if target[f] != shape[f]]
            if len(differing) != 1:
                raise SweepArgsError(
                    f"error: --target-shape '{target_shape}': give exactly one axis that differs "
                    f"from --base-shape, or pick one with --axis"
                )
            axis = differing[0]
        if axis not in ("width", "depth", "batch", "duration"):
            raise SweepArgsError(f"error: --axis {axis}: choose width, depth, batch or duration")
        if axis not in target:
            raise SweepArgsError(f"error: --target-shape '{target_shape}': has no value for the --axis {axis}")
        base_size = shape[axis]
        if base_size is None:
            raise SweepArgsError(f"error: --base-shape '{base_shape}': give the base {axis}")
        size_list = parse_sizes(sizes) if sizes else doubling_sizes(base_size, target[axis])
        if size_list[0] != base_size:
            raise SweepArgsError(f"error: --sizes '{sizes}': the first size must be the base {axis} {base_size}")
        if axis in ("batch", "duration") and shape["duration"] is None:
            if steps is None:
                raise SweepArgsError("error: batch/duration transfer needs --duration (or --steps at the base)")
            shape["duration"], steps = steps * shape["batch"], None
        specs = parse_hp_specs(hp)
        swept: list[Any] = []
        fixed_hp: dict[str, float] = {}
        for r in rule_names:  # every rule must know the HPs, with values in their domains
            resolved = resolve_specs(specs, loaded[r].module.HP_SPACE, loaded[r].name)
            swept = [s for s in resolved if s.is_range or len(s.values) > 1]
            fixed_hp = {s.name: s.values[0] for s in resolved if s not in swept}
        if len(swept) != 1:
            raise SweepArgsError(
                "error: --hp: give exactly one swept HP (a grid such as eta=2^-10..2^-4:7); "
                "single values are fixed overrides"
            )
        swept[0].grid()
        fixed = run_args(
            rule,
            width=shape["width"],
            depth=shape["depth"],
            batch=shape["batch"],
            duration=shape["duration"],
            steps=steps,
            seq_len=seq_len,
            head_dim=head_dim,
            qk_norm=False,
            params=params,
            hp=fixed_hp,
            seed=seed,
            device=device,
            corpus=corpus,
            eval_every=eval_every,
            eval_batches=eval_batches,
        ).config()
        fixed.pop("rule")
        spec = TransferSpec(rule_names, axis, size_list, swept[0], fixed, seeds, {r: loaded[r].name for r in loaded})
        configs = transfer_configs(spec)
        for r in rule_names:
            check_shapes(loaded[r], [c for c in configs if c["rule"] == r])
        console.print(
            f"transfer: {axis} {size_list} x {len(swept[0].grid())} values of {swept[0].name} x "
            f"{seeds} seed(s) x {len(rule_names)} rule(s) = {len(configs)} runs in {out}",
            markup=False,
            soft_wrap=True,
        )
        t0 = [time.perf_counter()]
        from scalec.runtime.studies.sweep import train_run_fn

        with StudyProgress("transfer", len(configs)) as bar:

            def report(i: int, record: Any) -> None:
                bar.advance(fmt_record(i, len(configs), record, [swept[0].name], t0[0]))
                t0[0] = time.perf_counter()

            results = run_transfer(spec, out, train_run_fn, report, title)
        console.print(to_markdown(spec, results), markup=False, soft_wrap=True)
        console.print(
            f"wrote {out / 'transfer.png'}, {out / 'transfer.md'}, {out / 'transfer.json'}",
            markup=False,
            soft_wrap=True,
        )
        if all(r.target_best_loss is None or math.isinf(r.target_best_loss) for r in results):
            raise typer.Exit(2)
