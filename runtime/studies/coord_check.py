"""Empirical coordinate checks: train a model (the bundled GPT or any model a factory builds, see
`coord_subject`) a few steps across widths and depths under a rule's plan, record per-module activation RMS
and update RMS |h_t - h_0| on a fixed probe batch, fit log-log slopes, judge.

The verdict per module and sweep uses the fitted ratio across the range, (x_max / x_min) ** slope, at the last
step: "unstable" when the update RMS or the activation RMS grows beyond growth_max, "lazy" when the update RMS
shrinks below decay_min (activations may legitimately shrink, e.g. muP logits at init), "pass" otherwise.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from scalec.compiler.parameterisation import load
from scalec.runtime.atomic_io import ensure_dir, write_text_atomic
from scalec.runtime.studies.coord_metrics import DEFAULT_ETA, METRICS, MODULES, CoordCheckError
from scalec.runtime.studies.coord_plot import plot_all
from scalec.runtime.studies.coord_subject import GPTSubject, ModelSubject
from scalec.runtime.trainer.data import Batch, ByteData, resolve_corpus


@dataclass(frozen=True)
class CoordCheckConfig:
    """What to sweep and how long to train; `hp` overrides the rule's base HPs (eta defaults to 2^-6).

    A single width (depth) means no width (depth) sweep. `head_dim` is the bundled GPT's; for a factory's
    model it is the model's head dimension (None: read from the model)."""

    widths: tuple[int, ...] = (64, 128, 256, 512)
    depths: tuple[int, ...] = (2, 4, 8, 16)
    base_width: int | None = None  # width of the depth sweep; default min(widths)
    base_depth: int | None = None  # depth of the width sweep; default min(depths)
    steps: int = 10
    seeds: int = 3
    batch: int = 8
    seq_len: int = 64
    head_dim: int | None = 32
    hp: Mapping[str, float] = field(default_factory=lambda: {"eta": DEFAULT_ETA})
    growth_max: float = 2.0
    decay_min: float = 0.3

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", tuple(sorted({int(w) for w in self.widths})))
        object.__setattr__(self, "depths", tuple(sorted({int(d) for d in self.depths})))
        object.__setattr__(self, "hp", dict(self.hp))
        if not self.widths or not self.depths or min(*self.widths, *self.depths) < 1:
            raise CoordCheckError("error: --widths and --depths need at least one positive size each")
        if not self.sweeps:
            raise CoordCheckError(
                "error: coord-check needs two or more --widths or --depths to fit a slope (one value: no sweep)"
            )
        for w in (*self.widths, self.width_for_depth_sweep) if self.head_dim is not None else ():
            if w % self.head_dim or self.head_dim % 2:
                raise CoordCheckError(
                    f"error: width {w} is not a multiple of head_dim {self.head_dim}; pick widths that are "
                    f"(or pass --head-dim)"
                )
        if self.steps < 1 or self.seeds < 1 or self.batch < 1 or self.seq_len < 2:
            raise CoordCheckError("error: --steps, --seeds, --batch must be >= 1 and --seq-len >= 2")

    @property
    def sweeps(self) -> tuple[str, ...]:
        """The swept axes: those given two or more sizes."""
        return tuple(a for a, xs in (("width", self.widths), ("depth", self.depths)) if len(xs) > 1)

    @property
    def width_for_depth_sweep(self) -> int:
        """Width at which depth is swept."""
        return self.base_width if self.base_width is not None else min(self.widths)

    @property
    def depth_for_width_sweep(self) -> int:
        """Depth at which width is swept."""
        return self.base_depth if self.base_depth is not None else min(self.depths)

    def hparams(self, rules):
        """The rule's HParams with this config's overrides (unknown names are one-line errors)."""
        unknown = [k for k in self.hp if k not in rules.module.HP_SPACE]
        if unknown:
            raise CoordCheckError(
                f"error: unknown hyperparameter {unknown[0]!r} for rule {rules.name}; "
                f"known: {', '.join(sorted(rules.module.HP_SPACE))}"
            )
        return rules.hparams(**self.hp)

    def thresholds(self) -> str:
        """The verdict rule in one line (printed with every table)."""
        return (
            f"verdict at the last step from the log-log fit, ratio = (x_max/x_min)^slope: 'unstable' if the "
            f"update RMS or the activation RMS grows > {self.growth_max:g}x across the range, 'lazy' if the "
            f"update RMS shrinks below {self.decay_min:g}x, 'pass' otherwise"
        )


@dataclass(frozen=True)
class Verdict:
    """One module's verdict on one sweep: "pass", "lazy" (update decays), "unstable" (grows) or "diverged"."""

    sweep: str
    module: str
    update_slope: float
    update_ratio: float
    act_slope: float
    act_ratio: float
    status: str
    reason: str

    @property
    def passed(self) -> bool:
        """Stable and not lazy."""
        return self.status == "pass"

    @property
    def stable(self) -> bool:
        """Nothing grows beyond the threshold (lazy modules are stable)."""
        return self.status in ("pass", "lazy")


@dataclass
class Sweep:
    """Seed-averaged curves of one sweep: values[metric][module][i_x][t], t = 0 (init) .. steps."""

    axis: str
    xs: list[int]
    fixed: dict[str, int]
    values: dict[str, dict[str, list[list[float]]]]
    seed_std: dict[str, dict[str, list[list[float]]]]
    loss: list[list[float]]  # mean train loss per x per step
    blocks: dict[str, list[list[float]]]  # per-block branch update RMS at the last step: kind -> [x][i]

    def slope(self, metric: str, module: str, t: int) -> float:
        """Least-squares slope of log(value) against log(x) at step t (nan when a value is not positive)."""
        ys = np.array([self.values[metric][module][i][t] for i in range(len(self.xs))], dtype=float)
        if not np.all(np.isfinite(ys)) or np.any(ys <= 0):
            return float("nan")
        return float(np.polyfit(np.log(self.xs), np.log(ys), 1)[0])

    def ratio(self, metric: str, module: str, t: int) -> float:
        """Fitted growth factor across the range, (x_max / x_min) ** slope."""
        s = self.slope(metric, module, t)
        return float((max(self.xs) / min(self.xs)) ** s) if math.isfinite(s) else float("nan")


@dataclass
class CoordCheckResult:
    """Everything a coordinate check produced: the curves of both sweeps and the verdicts."""

    rule: str
    config: CoordCheckConfig
    sweeps: dict[str, Sweep]
    verdicts: list[Verdict]
    wall_s: float = 0.0
    model: str = "bundled GPT"

    def passed(self, sweep: str) -> bool:
        """All modules pass on this sweep (stable and not lazy)."""
        return all(v.passed for v in self.verdicts if v.sweep == sweep)

    def stable(self, sweep: str) -> bool:
        """No module grows on this sweep (lazy modules count as stable)."""
        return all(v.stable for v in self.verdicts if v.sweep == sweep)

    def status(self, sweep: str) -> str:
        """The sweep's overall status: the worst module status (diverged > unstable > lazy > pass); "not run"
        for an axis given a single size."""
        order = ("pass", "lazy", "unstable", "diverged")
        return max((v.status for v in self.verdicts if v.sweep == sweep), key=order.index, default="not run")

    def verdict(self, sweep: str, module: str) -> Verdict:
        """The verdict of one module on one sweep."""
        return next(v for v in self.verdicts if v.sweep == sweep and v.module == module)

    def to_json(self) -> str:
        """Raw numbers, config and verdicts as JSON."""
        data = {
            "rule": self.rule,
            "model": self.model,
            "config": {**asdict(self.config), "thresholds": self.config.thresholds()},
            "wall_s": self.wall_s,
            "sweeps": {k: asdict(s) for k, s in self.sweeps.items()},
            "slopes": {
                k: {
                    m: {mod: [s.slope(m, mod, t) for t in range(self.config.steps + 1)] for mod in MODULES}
                    for m in METRICS
                }
                for k, s in self.sweeps.items()
            },
            "verdicts": [{**asdict(v), "passed": v.passed} for v in self.verdicts],
        }
        return json.dumps(data, indent=1, allow_nan=True)

    def save(self, out: str | Path) -> dict[str, Path]:
        """Write coord_check.json, coord_check.csv and coord_<sweep>.png into `out`; return {sweep: png}."""
        out = ensure_dir(out)
        write_text_atomic(out / "coord_check.json", self.to_json())
        write_text_atomic(out / "coord_check.csv", self.to_csv())
        return plot_all(self, out)

    def to_csv(self) -> str:
        """Long-format CSV: sweep, x, step, metric, module, mean, seed_std."""
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["rule", "sweep", "x", "step", "metric", "module", "mean", "seed_std"])
        for name, s in self.sweeps.items():
            for i, x in enumerate(s.xs):
                for metric in METRICS:
                    for module in MODULES:
                        for t, v in enumerate(s.values[metric][module][i]):
                            sd = s.seed_std[metric][module][i][t]
                            w.writerow([self.rule, name, x, t, metric, module, f"{v:.6g}", f"{sd:.6g}"])
        return buf.getvalue()


def _rms(x: torch.Tensor) -> float:
    return float(x.float().pow(2).mean().sqrt())


def run_one(
    rules,
    width: int,
    depth: int,
    seed: int,
    cfg: CoordCheckConfig,
    batches: Sequence[Batch],
    probe: torch.Tensor,
    subject=None,
) -> tuple[dict[str, dict[str, list[float]]], list[float]]:
    """Train one model `cfg.steps` steps; return ({metric: {key: [value per t]}}, [loss per step]).
    `subject`: a `coord_subject` GPTSubject (default) or ModelSubject."""
    inst = (subject or GPTSubject()).build(rules, width, depth, seed, cfg, probe)
    try:
        h0 = inst.capture(probe)
        rec: dict[str, dict[str, list[float]]] = {m: {k: [] for k in h0} for m in METRICS}
        for k, v in h0.items():
            rec["act"][k].append(_rms(v))
            rec["update"][k].append(0.0)
        losses = []
        for t in range(cfg.steps):
            loss = inst.loss(batches[t % len(batches)])
            loss.backward()
            inst.optimizer.step()
            inst.optimizer.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
            ht = inst.capture(probe)
            for k, v in ht.items():
                rec["act"][k].append(_rms(v))
                rec["update"][k].append(_rms(v - h0[k]))
    finally:
        inst.close()
    return rec, losses


PointRuns = list[tuple[dict[str, dict[str, list[float]]], list[float]]]  # run_one's result, one per seed


def seed_runs(
    rules, width: int, depth: int, cfg: CoordCheckConfig, batches: Sequence[Batch], probe: torch.Tensor, subject=None
) -> PointRuns:
    """One (width, depth) point: `cfg.seeds` runs, seeds 1000, 1001, ..."""
    return [run_one(rules, width, depth, 1000 + s, cfg, batches, probe, subject) for s in range(cfg.seeds)]


def sweep_points(cfg: CoordCheckConfig) -> list[tuple[str, int, int]]:
    """(axis, width, depth) of every point the config's sweeps train, in order."""
    out = []
    for axis in cfg.sweeps:
        for x in cfg.widths if axis == "width" else cfg.depths:
            point = (x, cfg.depth_for_width_sweep) if axis == "width" else (cfg.width_for_depth_sweep, x)
            out.append((axis, *point))
    return out


def _sweep(
    rules,
    axis: str,
    cfg: CoordCheckConfig,
    batches: Sequence[Batch],
    probe: torch.Tensor,
    progress: Callable[[str], None] | None,
    subject=None,
    trained: Callable[[int, int], PointRuns] | None = None,
) -> Sweep:
    xs = list(cfg.widths if axis == "width" else cfg.depths)
    fixed = {"depth": cfg.depth_for_width_sweep} if axis == "width" else {"width": cfg.width_for_depth_sweep}
    values = {m: {mod: [] for mod in MODULES} for m in METRICS}
    std = {m: {mod: [] for mod in MODULES} for m in METRICS}
    loss, blocks = [], {"attn": [], "mlp": []}
    for x in xs:
        width, depth = (x, fixed["depth"]) if axis == "width" else (fixed["width"], x)
        if progress:
            progress(f"{axis} sweep: width={width} depth={depth}")
        runs = trained(width, depth) if trained else seed_runs(rules, width, depth, cfg, batches, probe, subject)
        for m in METRICS:
            for mod in MODULES:
                arr = np.array([r[0][m][mod] for r in runs], dtype=float)  # (seeds, steps+1)
                values[m][mod].append(arr.mean(0).tolist())
                std[m][mod].append(arr.std(0).tolist())
        loss.append(np.array([r[1] for r in runs]).mean(0).tolist())
        for kind in ("attn", "mlp"):
            blocks[kind].append(
                [float(np.mean([r[0]["update"][f"{kind}.{i}"][-1] for r in runs])) for i in range(depth)]
            )
    return Sweep(axis, xs, fixed, values, std, loss, blocks)


def judge(sweep: Sweep, cfg: CoordCheckConfig) -> list[Verdict]:
    """Per-module verdicts of one sweep at the last step (thresholds in `cfg.thresholds()`)."""
    out, t = [], cfg.steps
    for mod in MODULES:
        us, ur = sweep.slope("update", mod, t), sweep.ratio("update", mod, t)
        as_, ar = sweep.slope("act", mod, t), sweep.ratio("act", mod, t)
        if not (math.isfinite(ur) and math.isfinite(ar)):
            status, reason = "diverged", "non-finite or zero values"
        elif ur > cfg.growth_max:
            status, reason = "unstable", f"update grows x{ur:.2g} with {sweep.axis}"
        elif ar > cfg.growth_max:
            status, reason = "unstable", f"activation grows x{ar:.2g} with {sweep.axis}"
        elif ur < cfg.decay_min:
            status, reason = "lazy", f"update shrinks to x{ur:.2g} with {sweep.axis}"
        else:
            status, reason = "pass", f"update x{ur:.2g}, activation x{ar:.2g} across the range"
        out.append(Verdict(sweep.axis, mod, us, ur, as_, ar, status, reason))
    return out


def run_coord_check(
    rules,
    cfg: CoordCheckConfig,
    batches: Sequence[Batch],
    probe: torch.Tensor,
    progress: Callable[[str], None] | None = None,
    sweeps: Sequence[str] | None = None,
    subject=None,
    trained: Callable[[int, int], PointRuns] | None = None,
) -> CoordCheckResult:
    """Run the sweeps of `rules` (a `scalec.load` Parameterisation; default `cfg.sweeps`) on token batches.

    `batches`: training batches (reused cyclically), `probe`: (batch, seq_len) tokens; see `load_batches`.
    `subject`: what is trained, a `coord_subject` GPTSubject (default) or ModelSubject. `trained(width, depth)`,
    when given, supplies each point's runs already trained (coord_runs.py) instead of training them here.
    """
    import time

    start = time.perf_counter()
    results = {
        axis: _sweep(rules, axis, cfg, batches, probe, progress, subject, trained) for axis in sweeps or cfg.sweeps
    }
    verdicts = [v for s in results.values() for v in judge(s, cfg)]
    label = subject.label if subject is not None else "bundled GPT"
    return CoordCheckResult(rules.name, cfg, results, verdicts, time.perf_counter() - start, label)


def load_batches(corpus: str | None, cfg: CoordCheckConfig, seed: int = 0) -> tuple[list[Batch], torch.Tensor]:
    """`cfg.steps` training batches and one held-out probe batch from a corpus (None = the default corpus,
    fetched on first use as `scalec train` does); the same batches serve every size and seed."""
    data = ByteData(resolve_corpus(corpus), cfg.seq_len, seed=seed)
    train = [data.train_batch(step, cfg.batch) for step in range(cfg.steps)]
    return train, data.eval_batches(1, cfg.batch)[0].x


def coord_check(
    factory: Callable[[int, int], torch.nn.Module] | None,
    rule,
    widths: Sequence[int] = (64, 128, 256, 512),
    depths: Sequence[int] = (2, 4, 8, 16),
    patterns: Mapping[str, str] | None = None,
    *,
    params: Mapping[str, str] | None = None,
    corpus: str | None = None,
    out: str | Path | None = None,
    **options,
) -> CoordCheckResult:
    """Coordinate check of `rule` (a name, path or `scalec.load` result) on the models `factory(width, depth)`
    builds (None: the bundled GPT); `patterns` bind parameters to roles (default: a preset, else inference).

    `options` are CoordCheckConfig fields (steps, seeds, batch, seq_len, head_dim, hp, ...); a single width or
    depth means no sweep along that axis. With `out`, writes coord_check.json / .csv and coord_<sweep>.png."""
    rules = load(rule, params) if isinstance(rule, (str, Path)) else rule
    if factory is not None:
        options.setdefault("head_dim", None)  # the model's own, read from it
    eta = rules.module.HP_SPACE.get("eta")  # the rule's own default: where a first run works
    options["hp"] = {"eta": float(eta.default) if eta is not None else DEFAULT_ETA, **options.get("hp", {})}
    cfg = CoordCheckConfig(widths=tuple(widths), depths=tuple(depths), **options)
    subject = ModelSubject(factory, patterns) if factory is not None else None
    if factory is None and patterns:
        raise CoordCheckError("error: patterns= bind a factory's model; the bundled GPT binds by its own preset")
    batches, probe = load_batches(corpus, cfg)
    result = run_coord_check(rules, cfg, batches, probe, subject=subject)
    if out is not None:
        result.save(out)
    return result
