"""Transfer studies: sweep one HP at several sizes along one axis per parameterisation, find each size's
optimum
(parabola in log2 space around the best grid point), its drift from the base size in factors of 2, and the
loss at the HP transferred from the base vs the best found at the target. Writes JSON, Markdown and a PNG
(the muTransfer figure: loss vs HP, one line per size, one panel per parameterisation).
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from scalec.runtime.studies import drift_protocol  # the drifts' 90 % intervals and verdicts (issue 20)
from scalec.runtime.studies.hp_grid import HPRange
from scalec.runtime.studies.run_store import RunFn, RunRecord, RunStore
from scalec.runtime.studies.sweep import SHAPE_FIELDS, check_seeds, check_size, fmt_value, run_sweep

AXIS_FIELDS = {"width": "width", "depth": "depth", "batch": "batch", "duration": "duration"}


@dataclass(frozen=True)
class TransferSpec:
    """Rules compared, the axis and sizes walked (first size = base), the swept HP, fixed run settings."""

    rules: Sequence[str]
    axis: str
    sizes: Sequence[float]
    hp: HPRange
    fixed: Mapping[str, Any]
    seeds: int = 1
    labels: Mapping[str, str] = field(default_factory=dict)  # rule -> display name (e.g. a file's NAME)

    def __post_init__(self) -> None:
        check_seeds(self.seeds)

    def label(self, rule: str) -> str:
        """Display name of a rule."""
        return self.labels.get(rule, rule)

    @property
    def config_field(self) -> str:
        """The TrainConfig field the axis sets."""
        return AXIS_FIELDS[self.axis]


def transfer_configs(spec: TransferSpec) -> list[dict[str, Any]]:
    """Every run of the study: rule x size x HP value x seed (base sizes first: a killed study is useful)."""
    check_size(len(spec.sizes) * len(spec.rules) * len(spec.hp.grid()) * spec.seeds)
    configs = []
    base_seed = int(spec.fixed.get("seed", 0))
    for size in spec.sizes:
        for rule in spec.rules:
            for value in spec.hp.grid():
                for s in range(spec.seeds):
                    config = {k: v for k, v in spec.fixed.items() if k != "hp"}
                    config.update(rule=rule, seed=base_seed + s)
                    config[spec.config_field] = int(size) if float(size).is_integer() else size
                    config["hp"] = {**dict(spec.fixed.get("hp", {})), spec.hp.name: value}
                    configs.append(config)
    return configs


@dataclass
class Optimum:
    """Best HP of one curve: the grid point, the fitted vertex (log2), and whether the fit was possible."""

    size: float
    best_value: float | None
    best_loss: float
    log2_opt: float | None
    fitted: bool
    edge: bool

    @property
    def opt(self) -> float | None:
        """The fitted optimum as an HP value."""
        return None if self.log2_opt is None else 2.0**self.log2_opt


def fit_optimum(values: Sequence[float], losses: Sequence[float], size: float = 0.0) -> Optimum:
    """Optimum of loss(log2 value): vertex of the parabola through the best grid point and its two neighbours,
    clipped to the neighbours; the grid point itself at the grid's edge or when the fit is not convex."""
    pts = sorted(zip(values, losses, strict=True))
    xs = [math.log2(v) for v, _ in pts]
    ys = [loss for _, loss in pts]
    finite = [i for i, y in enumerate(ys) if math.isfinite(y)]
    if not finite:
        return Optimum(size, None, math.inf, None, False, False)
    i = min(finite, key=lambda j: ys[j])
    edge = i in (0, len(xs) - 1)
    if edge or not (math.isfinite(ys[i - 1]) and math.isfinite(ys[i + 1])):
        return Optimum(size, pts[i][0], ys[i], xs[i], False, edge)
    (x0, x1, x2), (y0, y1, y2) = xs[i - 1 : i + 2], ys[i - 1 : i + 2]
    denom = (x0 - x1) * (x0 - x2) * (x1 - x2)
    a = (x2 * (y1 - y0) + x1 * (y0 - y2) + x0 * (y2 - y1)) / denom
    b = (x2 * x2 * (y0 - y1) + x1 * x1 * (y2 - y0) + x0 * x0 * (y1 - y2)) / denom
    if a <= 0:
        return Optimum(size, pts[i][0], ys[i], xs[i], False, False)
    vertex = min(x2, max(x0, -b / (2 * a)))
    return Optimum(size, pts[i][0], ys[i], vertex, True, False)


@dataclass
class Curve:
    """Loss vs HP value at one size for one rule (mean over seeds; inf = diverged, nan = missing)."""

    rule: str
    size: float
    values: list[float]
    losses: list[float]
    optimum: Optimum | None = None


@dataclass
class RuleResult:
    """One parameterisation's curves, optima, drift and transfer gap."""

    rule: str
    curves: list[Curve]
    drift: dict[str, float | None] = field(default_factory=dict)  # size -> log2(opt/opt_base)
    transferred_value: float | None = None
    transferred_loss: float | None = None
    target_best_value: float | None = None
    target_best_loss: float | None = None

    @property
    def gap(self) -> float | None:
        """Loss at the transferred HP minus the best loss found at the target."""
        if self.transferred_loss is None or self.target_best_loss is None:
            return None
        return self.transferred_loss - self.target_best_loss

    @property
    def max_drift(self) -> float | None:
        """Largest |drift| over the sizes, in factors of 2."""
        known = [abs(d) for d in self.drift.values() if d is not None]
        return max(known) if known else None


def curve_losses(spec: TransferSpec, records: Sequence[RunRecord]) -> dict[tuple[str, float, float], float]:
    """Mean loss over seeds per (rule, size, HP value); inf if any seed diverged, nan if any is missing."""
    groups: dict[tuple[str, float, float], list[float]] = {}
    for r in records:
        c = r.config
        key = (c["rule"], float(c[spec.config_field]), float(c["hp"][spec.hp.name]))
        groups.setdefault(key, []).append(r.loss)
    return {k: (math.inf if any(math.isinf(x) for x in v) else statistics.fmean(v)) for k, v in groups.items()}


def analyse(spec: TransferSpec, records: Sequence[RunRecord]) -> list[RuleResult]:
    """Curves, optima, drift and transfer gap per rule from the study's run records."""
    table = curve_losses(spec, records)
    grid = [float(v) for v in spec.hp.grid()]
    results = []
    for rule in spec.rules:
        curves = []
        for size in spec.sizes:
            losses = [table.get((rule, float(size), v), math.nan) for v in grid]
            curve = Curve(rule, float(size), grid, losses)
            curve.optimum = fit_optimum(grid, [x if not math.isnan(x) else math.inf for x in losses], size)
            curves.append(curve)
        result = RuleResult(rule, curves)
        base, target = curves[0].optimum, curves[-1].optimum
        for c in curves:
            known = c.optimum.log2_opt is not None and base.log2_opt is not None
            result.drift[_size_key(c.size)] = c.optimum.log2_opt - base.log2_opt if known else None
        if base.best_value is not None:
            result.transferred_value = base.best_value
            result.transferred_loss = curves[-1].losses[grid.index(base.best_value)]
        if target.best_value is not None:
            result.target_best_value, result.target_best_loss = target.best_value, target.best_loss
        results.append(result)
    return results


def _size_key(size: float) -> str:
    return f"{size:g}"


def _fmt_loss(x: float | None) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return "diverged" if math.isinf(x) else f"{x:.4f}"


def _fmt_size(axis: str, size: float) -> str:
    letter = SHAPE_FIELDS[AXIS_FIELDS[axis]]
    return f"{letter}={size:g}"


def to_markdown(spec: TransferSpec, results: Sequence[RuleResult]) -> str:
    """Optimum per size with drift, the transfer gap, and the full loss grid, as Markdown tables."""
    name = spec.hp.name
    out = [
        f"### Optimum of {name} per size ({spec.axis}; drift in factors of 2 from the base size)",
        "",
        f"| rule | size | best {name} (grid) | fitted optimum | drift (log2) | best loss |",
        "|---|---|---|---|---|---|",
    ]
    for res in results:
        for c in res.curves:
            o = c.optimum
            fitted = "-" if o.opt is None else f"2^{o.log2_opt:.2f}" + (" (edge)" if o.edge else "")
            d = res.drift.get(_size_key(c.size))
            out.append(
                f"| {spec.label(res.rule)} | {_fmt_size(spec.axis, c.size)} | "
                f"{'-' if o.best_value is None else fmt_value(o.best_value)} | {fitted} | "
                f"{'-' if d is None else f'{d:+.2f}'} | {_fmt_loss(o.best_loss)} |"
            )
    header = (
        f"| rule | {name} from base | loss at target | best {name} at target | best loss at target | "
        "gap | max drift (log2) |"
    )
    span = f"{_fmt_size(spec.axis, spec.sizes[0])} to {_fmt_size(spec.axis, spec.sizes[-1])}"
    out += ["", f"### Transfer from {span}", "", header, "|---|---|---|---|---|---|---|"]
    for res in results:
        gap = res.gap
        moved = "-" if res.transferred_value is None else fmt_value(res.transferred_value)
        out.append(
            f"| {spec.label(res.rule)} | {moved} | "
            f"{_fmt_loss(res.transferred_loss)} | "
            f"{'-' if res.target_best_value is None else fmt_value(res.target_best_value)} | "
            f"{_fmt_loss(res.target_best_loss)} | "
            f"{'-' if gap is None else ('inf' if math.isinf(gap) else f'{gap:+.4f}')} | "
            f"{'-' if res.max_drift is None else f'{res.max_drift:.2f}'} |"
        )
    grid = list(spec.hp.grid())
    out += [
        "",
        f"### Final validation loss (rows: size, columns: {name})",
        "",
        "| rule | size | " + " | ".join(fmt_value(v) for v in grid) + " |",
        "|---|---|" + "---|" * len(grid),
    ]
    for res in results:
        for c in res.curves:
            out.append(
                f"| {spec.label(res.rule)} | {_fmt_size(spec.axis, c.size)} | "
                + " | ".join(_fmt_loss(x) for x in c.losses)
                + " |"
            )
    return "\n".join(out) + "\n"


def to_json(spec: TransferSpec, results: Sequence[RuleResult]) -> dict[str, Any]:
    """Plain-data results (non-finite losses as null, with a status)."""

    def loss(x: float | None) -> float | None:
        return x if x is not None and math.isfinite(x) else None

    return {
        "axis": spec.axis,
        "sizes": list(spec.sizes),
        "hp": spec.hp.name,
        "grid": list(spec.hp.grid()),
        "seeds": spec.seeds,
        "fixed": dict(spec.fixed),
        "rules": [
            {
                "rule": r.rule,
                "name": spec.label(r.rule),
                "curves": [
                    {
                        "size": c.size,
                        "losses": [loss(x) for x in c.losses],
                        "status": [
                            "diverged" if math.isinf(x) else "missing" if math.isnan(x) else "finished"
                            for x in c.losses
                        ],
                        "optimum": {**asdict(c.optimum), "best_loss": loss(c.optimum.best_loss)},
                    }
                    for c in r.curves
                ],
                "drift_log2": r.drift,
                "transferred_value": r.transferred_value,
                "transferred_loss": loss(r.transferred_loss),
                "target_best_value": r.target_best_value,
                "target_best_loss": loss(r.target_best_loss),
                "gap": loss(r.gap),
            }
            for r in results
        ],
    }


def y_limits(losses: Sequence[float]) -> tuple[float, float, float]:
    """(bottom, top, diverged row) of the loss axis: every finite loss inside with a margin, and the row where
    diverged runs are marked above the highest one (nothing measured is ever clipped)."""
    finite = [x for x in losses if math.isfinite(x)]
    low, high = (min(finite), max(finite)) if finite else (0.0, 1.0)
    pad = 0.06 * max(high - low, 1e-3)
    diverged_row = high + 2 * pad
    return low - pad, diverged_row + pad, diverged_row


def figure(spec: TransferSpec, results: Sequence[RuleResult], title: str | None = None) -> Any:
    """The muTransfer figure: a panel per rule, loss vs log2(HP), a line per size; x marks diverged runs in a
    row above the highest loss."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(4.6 * len(results), 3.8), sharey=True, squeeze=False)
    bottom, top, diverged_row = y_limits([x for r in results for c in r.curves for x in c.losses])
    cmap = plt.get_cmap("viridis")
    for ax, res in zip(axes[0], results, strict=True):
        for k, c in enumerate(res.curves):
            color = cmap(k / max(1, len(res.curves) - 1))
            xs = [math.log2(v) for v in c.values]
            ys = [y if math.isfinite(y) else math.nan for y in c.losses]
            ax.plot(xs, ys, "o-", ms=3, color=color, label=_fmt_size(spec.axis, c.size))
            div = [x for x, y in zip(xs, c.losses, strict=True) if math.isinf(y)]
            ax.plot(div, [diverged_row] * len(div), "x", color=color, ms=6)
            o = c.optimum
            if o.log2_opt is not None:
                ax.axvline(o.log2_opt, color=color, lw=0.8, ls=":")
        drift = "" if res.max_drift is None else f"  (max drift {res.max_drift:.2f} octaves)"
        ax.set_title(spec.label(res.rule) + drift)
        ax.set_xlabel(f"log2 {spec.hp.name}")
        ax.set_ylim(bottom, top)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("final validation loss (x: diverged)")
    axes[0][-1].legend(fontsize=8, title=spec.axis)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot(spec: TransferSpec, results: Sequence[RuleResult], path: Path, title: str | None = None) -> None:
    """Write `figure(...)` as a PNG."""
    import matplotlib.pyplot as plt

    fig = figure(spec, results, title)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)
    plt.close(fig)


def run_transfer(
    spec: TransferSpec,
    out: Path,
    run_fn: RunFn,
    on_record: Callable[[int, RunRecord], None] | None = None,
    title: str | None = None,
    runner: Callable[[list[dict[str, Any]], RunStore], list[RunRecord]] | None = None,
) -> list[RuleResult]:
    """Run (or reuse from `out/store`) every run of the study, analyse, and write transfer.{json,md,png};
    `runner(configs, store) -> records` replaces the in-process loop (`grid_study.grid_runner`: shared by workers)."""
    configs = transfer_configs(spec)
    store = RunStore(out / "store")
    records = runner(configs, store) if runner is not None else run_sweep(configs, store, run_fn, on_record)
    results = analyse(spec, records)
    out.mkdir(parents=True, exist_ok=True)
    drifts = drift_protocol.transfer_drifts(spec.rules, spec.config_field, spec.hp.name, spec.sizes[0], records)
    (out / "transfer.json").write_text(json.dumps({**to_json(spec, results), "drifts": drifts}, indent=2) + "\n")
    protocol_md = drift_protocol.drift_markdown(drifts, spec.hp.name)
    (out / "transfer.md").write_text(to_markdown(spec, results) + "\n" + protocol_md)
    plot(spec, results, out / "transfer.png", title)
    return results
