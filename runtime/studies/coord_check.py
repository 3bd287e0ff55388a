"""Empirical coordinate checks: train the bundled GPT a few steps across widths and depths under a rule's
plan, record per-module activation RMS and update RMS |h_t - h_0| on a fixed probe batch, fit log-log
slopes, judge.

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

import numpy as np
import torch

from scalec.errors import ScalecError
from scalec.runtime.trainer.data import Batch, ByteData, resolve_corpus
from scalec.runtime.trainer.gpt import GPT, GPTConfig

# Modules reported per sweep. "attn"/"mlp" are the summed branch contributions of all blocks to the residual
# stream (after the residual multipliers): the quantity residual scaling keeps Theta(1) as depth grows.
MODULES: tuple[str, ...] = ("embed", "attn", "mlp", "residual", "final_norm", "logits")
METRICS: tuple[str, ...] = ("act", "update")
METRIC_TITLES: dict[str, str] = {"act": "activation RMS  |h_t|", "update": "update RMS  |h_t - h_0|"}
SWEEPS: tuple[str, ...] = ("width", "depth")
DEFAULT_ETA = 2.0**-6


class CoordCheckError(ScalecError):
    """Bad coordinate-check input (sizes, data)."""


@dataclass(frozen=True)
class CoordCheckConfig:
    """What to sweep and how long to train; `hp` overrides the rule's base HPs (eta defaults to 2^-6)."""

    widths: tuple[int, ...] = (64, 128, 256, 512)
    depths: tuple[int, ...] = (2, 4, 8, 16)
    base_width: int | None = None  # width of the depth sweep; default min(widths)
    base_depth: int | None = None  # depth of the width sweep; default min(depths)
    steps: int = 10
    seeds: int = 3
    batch: int = 8
    seq_len: int = 64
    head_dim: int = 32
    hp: Mapping[str, float] = field(default_factory=lambda: {"eta": DEFAULT_ETA})
    growth_max: float = 2.0
    decay_min: float = 0.3

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", tuple(sorted({int(w) for w in self.widths})))
        object.__setattr__(self, "depths", tuple(sorted({int(d) for d in self.depths})))
        object.__setattr__(self, "hp", dict(self.hp))
        if len(self.widths) < 2 or len(self.depths) < 2:
            raise CoordCheckError("error: coord-check needs at least two --widths and two --depths to fit slopes")
        for w in (*self.widths, self.width_for_depth_sweep):
            if w % self.head_dim or self.head_dim % 2:
                raise CoordCheckError(
                    f"error: width {w} is not a multiple of head_dim {self.head_dim}; pick widths that are "
                    f"(or pass --head-dim)"
                )
        if min(self.depths) < 1 or self.steps < 1 or self.seeds < 1 or self.batch < 1 or self.seq_len < 2:
            raise CoordCheckError("error: --depths, --steps, --seeds, --batch must be >= 1 and --seq-len >= 2")

    @property
    def width_for_depth_sweep(self) -> int:
        """Width at which depth is swept."""
        return self.base_width if self.base_width is not None else min(self.widths)

    @property
    def depth_for_width_sweep(self) -> int:
        """Depth at which width is swept."""
        return self.base_depth if self.base_depth is not None else min(self.depths)

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

    def passed(self, sweep: str) -> bool:
        """All modules pass on this sweep (stable and not lazy)."""
        return all(v.passed for v in self.verdicts if v.sweep == sweep)

    def stable(self, sweep: str) -> bool:
        """No module grows on this sweep (lazy modules count as stable)."""
        return all(v.stable for v in self.verdicts if v.sweep == sweep)

    def status(self, sweep: str) -> str:
        """The sweep's overall status: the worst module status (diverged > unstable > lazy > pass)."""
        order = ("pass", "lazy", "unstable", "diverged")
        return max((v.status for v in self.verdicts if v.sweep == sweep), key=order.index)

    def verdict(self, sweep: str, module: str) -> Verdict:
        """The verdict of one module on one sweep."""
        return next(v for v in self.verdicts if v.sweep == sweep and v.module == module)

    def to_json(self) -> str:
        """Raw numbers, config and verdicts as JSON."""
        data = {
            "rule": self.rule,
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


class _Probe:
    """Forward hooks that capture each reported module's output on the probe batch."""

    def __init__(self, model: GPT) -> None:
        self.active = False
        self.out: dict[str, torch.Tensor] = {}
        self.handles = [
            model.embed.register_forward_hook(self._hook("embed")),
            model.final_norm.register_forward_hook(self._hook("final_norm")),
            model.unembed.register_forward_hook(self._hook("logits")),
        ]
        for i, block in enumerate(model.blocks):
            self.handles.append(block.attn.register_forward_hook(self._hook(f"attn.{i}")))
            self.handles.append(block.mlp.register_forward_hook(self._hook(f"mlp.{i}")))
        last = len(model.blocks) - 1
        self.handles.append(model.blocks[last].register_forward_hook(self._hook("residual")))

    def _hook(self, key: str) -> Callable:
        def hook(_module, _inputs, output):
            if self.active:
                self.out[key] = output.detach().float().clone()

        return hook

    @torch.no_grad()
    def capture(self, model: GPT, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        """Run the probe batch and return {module: output}, with the summed attn/mlp branch contributions."""
        self.out, self.active = {}, True
        try:
            model(idx)
        finally:
            self.active = False
        out = dict(self.out)
        depth = len(model.blocks)
        for kind in ("attn", "mlp"):
            out[kind] = sum(out[f"{kind}.{i}"] for i in range(depth))
        return out

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def _shape(rules, width: int, depth: int, head_dim: int):
    """The rule's Shape at this width/depth/head_dim; batch and duration stay at the base (m_B = m_D = 1)."""
    return rules.shape(n=float(width), L=float(depth), d_head=float(head_dim))


def _hparams(rules, hp: Mapping[str, float]):
    """HParams with overrides by HP name ("eta", "lr[mlp.down]"); unknown names are one-line errors."""
    unknown = [k for k in hp if k not in rules.module.HP_SPACE]
    if unknown:
        raise CoordCheckError(
            f"error: unknown hyperparameter {unknown[0]!r} for rule {rules.name}; "
            f"known: {', '.join(sorted(rules.module.HP_SPACE))}"
        )
    return rules.hparams(**hp)


def run_one(
    rules,
    width: int,
    depth: int,
    seed: int,
    cfg: CoordCheckConfig,
    batches: Sequence[Batch],
    probe: torch.Tensor,
) -> tuple[dict[str, dict[str, list[float]]], list[float]]:
    """Train one model `cfg.steps` steps; return ({metric: {key: [value per t]}}, [loss per step])."""
    from scalec.runtime.plan.planner import make_plan

    shape = _shape(rules, width, depth, cfg.head_dim)
    hp = _hparams(rules, cfg.hp)
    gcfg = GPTConfig(width=width, depth=depth, head_dim=cfg.head_dim, seq_len=cfg.seq_len)
    with torch.device("meta"):
        plan = make_plan(rules, GPT(gcfg), shape, hp)
    torch.manual_seed(seed)
    model = GPT(gcfg, plan.multipliers)
    torch.manual_seed(seed)
    plan.init_(model)
    opt = plan.optimizer(model)
    probe_hooks = _Probe(model)
    h0 = probe_hooks.capture(model, probe)
    rec: dict[str, dict[str, list[float]]] = {m: {k: [] for k in h0} for m in METRICS}
    for k, v in h0.items():
        rec["act"][k].append(_rms(v))
        rec["update"][k].append(0.0)
    losses = []
    for t in range(cfg.steps):
        b = batches[t % len(batches)]
        loss = model(b.x, b.y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
        ht = probe_hooks.capture(model, probe)
        for k, v in ht.items():
            rec["act"][k].append(_rms(v))
            rec["update"][k].append(_rms(v - h0[k]))
    probe_hooks.remove()
    return rec, losses


def _sweep(
    rules,
    axis: str,
    cfg: CoordCheckConfig,
    batches: Sequence[Batch],
    probe: torch.Tensor,
    progress: Callable[[str], None] | None,
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
        runs = [run_one(rules, width, depth, 1000 + s, cfg, batches, probe) for s in range(cfg.seeds)]
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
    sweeps: Sequence[str] = SWEEPS,
) -> CoordCheckResult:
    """Run the width and depth sweeps of `rules` (a `scalec.load` Parameterisation) on token batches.

    `batches`: training batches (reused cyclically), `probe`: (batch, seq_len) tokens; see `load_batches`.
    """
    import time

    start = time.perf_counter()
    results = {axis: _sweep(rules, axis, cfg, batches, probe, progress) for axis in sweeps}
    verdicts = [v for s in results.values() for v in judge(s, cfg)]
    return CoordCheckResult(rules.name, cfg, results, verdicts, time.perf_counter() - start)


def load_batches(corpus: str | None, cfg: CoordCheckConfig, seed: int = 0) -> tuple[list[Batch], torch.Tensor]:
    """`cfg.steps` training batches and one held-out probe batch from a corpus (None = the default corpus,
    fetched on first use as `scalec train` does); the same batches serve every size and seed."""
    data = ByteData(resolve_corpus(corpus), cfg.seq_len, seed=seed)
    train = [data.train_batch(step, cfg.batch) for step in range(cfg.steps)]
    return train, data.eval_batches(1, cfg.batch)[0].x
