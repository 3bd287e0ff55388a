"""Grid and random sweeps over a rule's tunable HPs, run through a resumable RunStore.

A run config is a plain dict with TrainConfig's field names (`rule`, `width`, `depth`, `batch`, `duration`,
`hp`, `seed`, ...); `run_fn(config, out_dir) -> summary` trains it (the real trainer by default, a fast fake
in tests).
"""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scalec.compiler.parameterisation import load
from scalec.errors import ScalecError
from scalec.runtime.studies.hp_grid import MAX_GRID, HPRange, grid_points, parse_hp_specs, random_points, resolve_specs
from scalec.runtime.studies.run_store import RunFn, RunRecord, RunStore, canonical_json
from scalec.runtime.studies.user_objective import run_objective
from scalec.runtime.trainer.run_inputs import InputHasher
from scalec.runtime.trainer.train import train
from scalec.runtime.trainer.train_config import TrainConfig

# TrainConfig field -> rule axis.
SHAPE_FIELDS = {"width": "n", "depth": "L", "batch": "B", "duration": "D"}


class ShapeRangeError(ScalecError):
    """A requested model shape lies outside the axis range the rule file declares."""


@dataclass(frozen=True)
class SweepSpec:
    """What to sweep: fixed run settings, HP specs (grid, or `random` samples) and seeds per point."""

    fixed: Mapping[str, Any]
    hps: Sequence[HPRange] = ()
    random: int | None = None
    seeds: int = 1
    sample_seed: int = 0

    def __post_init__(self) -> None:
        check_seeds(self.seeds)


class StudySpecError(ScalecError):
    """A study that cannot run: no seeds, or more runs than MAX_GRID."""


def check_seeds(seeds: int) -> None:
    """Every study runs each point with at least one seed (0 would run nothing and report nothing)."""
    if not isinstance(seeds, int) or seeds < 1:
        raise StudySpecError(f"error: --seeds {seeds}: give at least 1 seed per point")


def check_size(n_runs: int) -> None:
    """Refuse a study of more than MAX_GRID runs (points x seeds x sizes x rules) before anything runs."""
    if n_runs > MAX_GRID:
        raise StudySpecError(
            f"error: the study has {n_runs} runs, beyond the bound of {MAX_GRID}; use coarser grids or fewer seeds"
        )


def sweep_configs(spec: SweepSpec) -> list[dict[str, Any]]:
    """Expand a spec into run configs: HP points x seeds; fixed `hp` values merge under the swept ones."""
    points = random_points(spec.hps, spec.random, spec.sample_seed) if spec.random else grid_points(spec.hps)
    check_size(len(points) * spec.seeds)
    base_seed = int(spec.fixed.get("seed", 0))
    configs = []
    for point in points:
        for s in range(spec.seeds):
            config = {k: v for k, v in spec.fixed.items() if k != "hp"}
            config["hp"] = {**dict(spec.fixed.get("hp", {})), **point}
            config["seed"] = base_seed + s
            configs.append(config)
    return configs


def check_shape(rules: Any, config: Mapping[str, Any], labels: Mapping[str, str] | None = None) -> None:
    """Raise ShapeRangeError (one line) when the config's shape leaves the rule's declared AXIS_RANGES;
    `labels` name how the user gave a field (default `--width 64`)."""
    module = getattr(rules, "module", rules)
    ranges = getattr(module, "AXIS_RANGES", {})
    for fld, axis in SHAPE_FIELDS.items():
        value = config.get(fld)
        if value is None or axis not in ranges:
            continue
        low, high = ranges[axis]
        if not low <= float(value) <= high:
            label = (labels or {}).get(fld, f"--{fld} {value:g}")
            raise ShapeRangeError(
                f"error: {label}: outside the range [{low:g}, {high:g}] that "
                f"{getattr(module, 'NAME', 'the rule')} declares for axis {axis}; "
                f"pick a {fld} inside it or widen the rule's axis range"
            )
    if hasattr(rules, "shape"):  # then the rule's whole feasible region, as every command checks it
        axes = {axis: config[fld] for fld, axis in SHAPE_FIELDS.items() if config.get(fld) is not None}
        if config.get("head_dim") is not None:
            axes["d_head"] = config["head_dim"]
        try:
            shape = rules.shape(**axes)
            if config.get("hp"):  # the region may depend on the HPs (Complete(d)P: S >= S0 * (1-beta1))
                rules.module.check_shape(shape, rules.hparams(**dict(config["hp"])))
        except (ScalecError, ValueError) as exc:
            shown = ", ".join((labels or {}).get(f, f"--{f} {config[f]:g}") for f in SHAPE_FIELDS if f in config)
            raise ShapeRangeError(f"error: {shown}: {str(exc).removeprefix('error: ')}") from None


def run_sweep(
    configs: Sequence[Mapping[str, Any]],
    store: RunStore,
    run_fn: RunFn,
    on_record: Callable[[int, RunRecord], None] | None = None,
) -> list[RunRecord]:
    """Run every config not already done in the store, in order; returns one record per config."""
    records = []
    for i, config in enumerate(configs):
        record = store.run(config, run_fn)
        records.append(record)
        if on_record is not None:
            on_record(i, record)
    return records


@dataclass
class SweepRow:
    """One HP point aggregated over seeds."""

    hp: dict[str, float]
    losses: list[float] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        """ "diverged" if any seed diverged, "failed"/"running" if any did, else "finished"."""
        for s in ("diverged", "failed", "running"):
            if s in self.statuses:
                return s
        return "finished"

    @property
    def loss(self) -> float:
        """Mean final val loss over seeds; inf if any seed diverged, nan if any is missing."""
        if self.status == "diverged":
            return math.inf
        if self.status != "finished" or not self.losses:
            return math.nan
        return statistics.fmean(self.losses)

    @property
    def spread(self) -> float:
        """Sample standard deviation over seeds (0 for one seed)."""
        finite = [x for x in self.losses if math.isfinite(x)]
        return statistics.stdev(finite) if len(finite) > 1 else 0.0


def summarize(records: Sequence[RunRecord]) -> list[SweepRow]:
    """Group records by everything but the seed; rows sorted best first (diverged and failed last)."""
    rows: dict[str, SweepRow] = {}
    for r in records:
        key = canonical_json({k: v for k, v in r.config.items() if k != "seed"})
        row = rows.setdefault(key, SweepRow(dict(r.config.get("hp", {}))))
        row.losses.append(r.loss)
        row.statuses.append(r.status)
    return sorted(rows.values(), key=lambda row: (not math.isfinite(row.loss), row.loss))


def best_row(rows: Sequence[SweepRow]) -> SweepRow | None:
    """The row with the lowest finite loss, if any."""
    finite = [r for r in rows if math.isfinite(r.loss)]
    return min(finite, key=lambda r: r.loss) if finite else None


def fmt_value(x: float) -> str:
    """Compact HP value: powers of two as 2^k, else 4 significant digits."""
    if x > 0:
        k = math.log2(x)
        if abs(k - round(k)) < 1e-9 and abs(k) >= 2:
            return f"2^{round(k)}"
    return f"{x:.4g}"


def loss_text(row: SweepRow) -> str:
    """A row's final loss for tables: mean (+- std over seeds), "inf" when diverged, "-" when none finished."""
    if math.isinf(row.loss):
        return "inf"
    if math.isnan(row.loss):
        return "-"
    return f"{row.loss:.4f}" + (f" ± {row.spread:.4f}" if len(row.losses) > 1 else "")


def rows_markdown(rows: Sequence[SweepRow], names: Sequence[str] | None = None) -> str:
    """A Markdown table of sweep rows: swept HPs, mean loss (+- std over seeds), status."""
    names = list(names) if names else sorted({k for r in rows for k in r.hp})
    lines = [
        "| " + " | ".join([*names, "final val loss", "seeds", "status"]) + " |",
        "|" + "---|" * (len(names) + 3),
    ]
    for r in rows:
        loss = loss_text(r)
        cells = [fmt_value(r.hp[n]) if n in r.hp else "" for n in names]
        lines.append("| " + " | ".join([*cells, loss, str(len(r.losses)), r.status]) + " |")
    return "\n".join(lines)


def load_rules(rule: Any, params: Mapping[str, str] | None = None) -> Any:
    """`scalec.load` the rule (a name or .scale path; a loaded rule passes through)."""
    if not isinstance(rule, (str, Path)):
        return rule
    return load(rule, params=dict(params) if params else None)


def split_hp_specs(items: Sequence[str] | None, rules: Any) -> tuple[dict[str, float], list[HPRange]]:
    """`--hp` specs checked against the rule: single values become fixed overrides, the rest are swept."""
    specs = resolve_specs(parse_hp_specs(list(items) if items else None), rules.module.HP_SPACE, rules.name)
    fixed = {s.name: s.values[0] for s in specs if not s.is_range and len(s.values) == 1}
    return fixed, [s for s in specs if s.is_range or len(s.values) > 1]


def check_shapes(rules: Any, configs: Sequence[Mapping[str, Any]]) -> None:
    """Every config's shape inside the rule's declared axis ranges (duration from steps when needed)."""
    for c in configs:
        shaped, labels = dict(c), {}
        if shaped.get("duration") is None and shaped.get("steps") is not None:
            shaped["duration"] = int(shaped["steps"]) * int(shaped["batch"])
            labels["duration"] = f"--steps {shaped['steps']} (= {shaped['duration']} tokens at --batch {c['batch']})"
        check_shape(rules, shaped, labels)


def train_run_fn(config: Mapping[str, Any], out_dir: Path) -> dict[str, Any]:
    """Train one run config and return its summary: with the user's objective when the config names one
    (`user_objective.run_objective`), else with the bundled trainer (`scalec.runtime.trainer.train.train`) on the
    bundled GPT or the config's `model`."""
    if config.get("objective"):
        return run_objective(config, out_dir)

    names = {f.name for f in dataclasses.fields(TrainConfig)}
    kwargs = {k: v for k, v in config.items() if k in names}
    unknown = sorted(set(config) - names)
    if unknown:
        raise ValueError(f"TrainConfig has no field(s) {unknown}")
    if "out_dir" in names:
        kwargs["out_dir"] = str(out_dir)
    if "resume" in names:
        kwargs["resume"] = True
    if "progress" in names:
        kwargs.setdefault("progress", False)
    summary = train(TrainConfig(**kwargs))
    out = dataclasses.asdict(summary) if dataclasses.is_dataclass(summary) else dict(summary)
    binding = Path(out_dir) / "binding.json"
    if config.get("model") and binding.is_file():  # your model: what the plan bound, folded and hooked
        out["binding"] = json.loads(binding.read_text())
    return out


# The store keys each run on the hashes of the rule chain and corpus it reads (run_inputs), not just their names.
train_run_fn.key_inputs = InputHasher  # type: ignore[attr-defined]
