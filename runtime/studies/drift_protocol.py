"""The drift protocol of the evidence studies (issue 20), fixed before any of their runs.

Design: each curve (one rule at one size) is a grid of 5 points half an octave apart in log2(eta) around the
predicted optimum, extended by one point beyond an edge while the seed-mean best sits at that edge; 3 paired
seeds (the same seeds at every point, size and rule) and 16 x 16-sequence eval windows.

Analysis: a least-squares quadratic in log2(eta) per seed and on the seed mean; a curve's optimum is the vertex
of the seed-mean fit, clipped to the measured range (a non-convex fit gives its lower end). The drift is the
target optimum minus the base optimum in octaves, with two 90 % bootstrap intervals: one resampling whole paired
seed curves (the same seeds drawn for base and target), one parametric, adding to the fitted mean curves
Gaussian noise of the pooled residual sd (residuals about the mean fit, each seed's offset removed: an offset
cannot move a vertex). The verdict reads the hull of both intervals: *transfers* if it lies inside +-0.35
octaves, *does not transfer* if it excludes 0 and its near end lies beyond +-0.35, else *inconclusive*.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

GRID_POINTS = 5
GRID_STEP = 0.5  # octaves between grid points
SEEDS = 3
EVAL_BATCHES = 16  # validation windows of 16 sequences each
MAX_EXTENSIONS = 4  # one point at a time beyond an edge
TRANSFER_BAND = 0.35  # octaves
CI_LEVEL = 0.90
BOOTSTRAP_DRAWS = 2000
BOOTSTRAP_SEED = 20
TRANSFERS, DOES_NOT_TRANSFER, INCONCLUSIVE = "transfers", "does not transfer", "inconclusive"
# Two-sided 90 % Student t quantiles (0.95 one-sided) for 1..10 degrees of freedom.
T90 = (6.314, 2.920, 2.353, 2.132, 2.015, 1.943, 1.895, 1.860, 1.833, 1.812)


def centred_grid(log2_centre: float, points: int = GRID_POINTS, step: float = GRID_STEP) -> list[float]:
    """log2(eta) of `points` values `step` octaves apart, centred on `log2_centre`."""
    half = (points - 1) / 2
    return [log2_centre + (i - half) * step for i in range(points)]


def extend_grid(log2_grid: Sequence[float], mean_losses: Sequence[float], step: float = GRID_STEP) -> list[float]:
    """The grid plus one point beyond the edge where the seed-mean best lies; the grid itself when it is interior.

    Non-finite losses (diverged) never count as best.
    """
    pts = sorted(zip(log2_grid, mean_losses, strict=True))
    finite = [i for i, (_, y) in enumerate(pts) if math.isfinite(y)]
    xs = [x for x, _ in pts]
    if not finite:
        return xs
    best = min(finite, key=lambda i: pts[i][1])
    if best == 0:
        return [xs[0] - step, *xs]
    if best == len(xs) - 1:
        return [*xs, xs[-1] + step]
    return xs


@dataclass(frozen=True)
class SeedCurves:
    """One rule at one size: losses[s][p] of seed seeds[s] at log2(eta) = x[p]; only points every seed finished."""

    x: tuple[float, ...]
    seeds: tuple[int, ...]
    losses: tuple[tuple[float, ...], ...]

    @property
    def mean(self) -> list[float]:
        """Seed-mean loss per point."""
        return [float(v) for v in np.mean(np.asarray(self.losses, float), axis=0)]

    def select(self, seed_rows: Sequence[int]) -> SeedCurves:
        """The curves of the given seed rows (repeats allowed: a bootstrap draw)."""
        return SeedCurves(self.x, tuple(self.seeds[i] for i in seed_rows), tuple(self.losses[i] for i in seed_rows))


def curves_from_runs(runs: Sequence[Mapping[str, Any]]) -> SeedCurves:
    """SeedCurves from run rows {"eta", "seed", "val_loss"} (val_loss None = diverged or missing).

    A point enters only if every seed of the curve has a finite loss there (the curves stay paired).
    """
    table: dict[float, dict[int, float]] = {}
    for r in runs:
        loss = r.get("val_loss")
        y = math.inf if loss is None else float(loss)
        table.setdefault(round(math.log2(float(r["eta"])), 9), {})[int(r["seed"])] = y
    seeds = sorted({s for row in table.values() for s in row})
    xs = sorted(x for x, row in table.items() if all(math.isfinite(row.get(s, math.inf)) for s in seeds))
    return SeedCurves(tuple(xs), tuple(seeds), tuple(tuple(table[x][s] for x in xs) for s in seeds))


def _design(x: Sequence[float]) -> np.ndarray:
    """The (3, points) matrix mapping losses to least-squares (a, b, c) of a x^2 + b x + c."""
    if len(set(x)) < 3:
        raise ValueError(f"a quadratic fit needs 3 distinct points, got {len(set(x))}")
    xs = np.asarray(x, float)
    return np.linalg.pinv(np.stack([xs * xs, xs, np.ones_like(xs)], axis=1))


def fit_quadratic(x: Sequence[float], y: Sequence[float]) -> tuple[float, float, float]:
    """Least-squares (a, b, c) of y = a x^2 + b x + c (needs at least 3 distinct x)."""
    a, b, c = _design(x) @ np.asarray(y, float)
    return float(a), float(b), float(c)


def _vertices(x: Sequence[float], ys: np.ndarray) -> np.ndarray:
    """Row-wise `vertex` of many loss rows (draws, points) on the same x."""
    coef = np.asarray(ys, float) @ _design(x).T
    a, b = coef[..., 0], coef[..., 1]
    lo, hi = min(x), max(x)
    with np.errstate(divide="ignore", invalid="ignore"):
        inner = np.clip(-b / (2 * a), lo, hi)
    lower_end = np.where(a * lo * lo + b * lo <= a * hi * hi + b * hi, lo, hi)
    return np.where(a > 0, inner, lower_end)


def vertex(x: Sequence[float], y: Sequence[float]) -> float:
    """Minimiser of the least-squares quadratic over [min x, max x]: the vertex clipped to the range when convex,
    else the end where the fit is lower."""
    return float(_vertices(x, np.asarray([y], float))[0])


def optimum(curve: SeedCurves) -> float:
    """log2 of the fitted optimum of the seed-mean curve."""
    return vertex(curve.x, curve.mean)


def seed_optima(curve: SeedCurves) -> list[float]:
    """log2 of each seed's own fitted optimum."""
    return [float(v) for v in _vertices(curve.x, np.asarray(curve.losses, float))]


def fitted_loss(curve: SeedCurves, log2_eta: float) -> list[float]:
    """Each seed's quadratic fit evaluated at `log2_eta` (the loss of that seed at a chosen eta)."""
    coef = np.asarray(curve.losses, float) @ _design(curve.x).T
    return [float(v) for v in coef @ np.array([log2_eta**2, log2_eta, 1.0])]


def pooled_residual_sd(curves: Sequence[SeedCurves]) -> float:
    """Residual sd about the seed-mean quadratic, each seed's offset removed, pooled over `curves`."""
    ss, dof = 0.0, 0
    for c in curves:
        a, b, q0 = fit_quadratic(c.x, c.mean)
        fit = np.array([a * x * x + b * x + q0 for x in c.x])
        resid = np.asarray(c.losses, float) - fit
        resid -= resid.mean(axis=1, keepdims=True)
        ss += float((resid**2).sum())
        dof += resid.size - 3 - (len(c.seeds) - 1)
    return math.sqrt(ss / dof) if dof > 0 else math.nan


def _interval(draws: np.ndarray, level: float = CI_LEVEL) -> tuple[float, float]:
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(np.asarray(draws, float), [tail, 100 - tail])
    return float(lo), float(hi)


# A statistic maps optima (draws, curves) to one value per draw (draws,).
Statistic = Callable[[np.ndarray], np.ndarray]


def drift_statistic(optima: np.ndarray) -> np.ndarray:
    """Second curve's optimum minus the first's."""
    return optima[:, 1] - optima[:, 0]


def slope_statistic(log2_sizes: Sequence[float]) -> Statistic:
    """Least-squares slope of log2 optimum against log2 size (k in lr* ~ size^k)."""
    xs = np.asarray(log2_sizes, float)
    centred = (xs - xs.mean()) / float(((xs - xs.mean()) ** 2).sum())
    return lambda optima: (optima - optima.mean(axis=1, keepdims=True)) @ centred


def seed_bootstrap(
    curves: Sequence[SeedCurves], statistic: Statistic, draws: int = BOOTSTRAP_DRAWS, seed: int = BOOTSTRAP_SEED
) -> np.ndarray:
    """`statistic` over draws resampling whole seeds, the same seeds for every curve (paired)."""
    seeds = curves[0].seeds
    for c in curves:
        if c.seeds != seeds:
            raise ValueError(f"curves are not paired: seeds {c.seeds} vs {seeds}")
    rows = np.random.default_rng(seed).integers(0, len(seeds), (draws, len(seeds)))
    optima = [_vertices(c.x, np.asarray(c.losses, float)[rows].mean(axis=1)) for c in curves]
    return statistic(np.stack(optima, axis=1))


def parametric_bootstrap(
    curves: Sequence[SeedCurves],
    statistic: Statistic,
    sd: float,
    draws: int = BOOTSTRAP_DRAWS,
    seed: int = BOOTSTRAP_SEED,
) -> np.ndarray:
    """`statistic` over draws of mean curves: the fitted mean quadratic plus the mean of `seeds` Gaussian noise rows
    of sd `sd` (the pooled residual sd)."""
    rng = np.random.default_rng(seed + 1)
    optima = []
    for c in curves:
        xs = np.asarray(c.x, float)
        fit = np.stack([xs * xs, xs, np.ones_like(xs)], axis=1) @ (_design(c.x) @ np.asarray(c.mean, float))
        noise = rng.normal(0.0, sd, (draws, len(c.seeds), len(c.x))).mean(axis=1)
        optima.append(_vertices(c.x, fit + noise))
    return statistic(np.stack(optima, axis=1))


def verdict(lo: float, hi: float, band: float = TRANSFER_BAND) -> str:
    """transfers | does not transfer | inconclusive, from a drift interval [lo, hi] in octaves."""
    if -band <= lo and hi <= band:
        return TRANSFERS
    if lo > 0 and lo > band or hi < 0 and hi < -band:
        return DOES_NOT_TRANSFER
    return INCONCLUSIVE


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its seed-bootstrap, parametric and hull 90 % intervals."""

    value: float
    ci_seed: tuple[float, float]
    ci_param: tuple[float, float]

    @property
    def ci90(self) -> tuple[float, float]:
        """The hull of the two intervals (what the verdict reads)."""
        return min(self.ci_seed[0], self.ci_param[0]), max(self.ci_seed[1], self.ci_param[1])


def estimate(curves: Sequence[SeedCurves], statistic: Statistic, sd: float) -> Estimate:
    """`statistic` of the curves' optima with both bootstrap intervals."""
    value = float(statistic(np.array([[optimum(c) for c in curves]]))[0])
    return Estimate(
        value, _interval(seed_bootstrap(curves, statistic)), _interval(parametric_bootstrap(curves, statistic, sd))
    )


def drift(base: SeedCurves, target: SeedCurves, sd: float) -> Estimate:
    """Target optimum minus base optimum (octaves) with its intervals."""
    return estimate([base, target], drift_statistic, sd)


def exponent(curves: Sequence[SeedCurves], log2_sizes: Sequence[float], sd: float) -> Estimate:
    """Slope of log2 optimum against log2 size over the curves (k in lr* ~ size^k) with its intervals."""
    return estimate(curves, slope_statistic(log2_sizes), sd)


def paired_t(diffs: Sequence[float], level: float = CI_LEVEL) -> tuple[float, tuple[float, float]]:
    """Mean of paired differences and its two-sided t interval (level 0.90 only)."""
    if level != CI_LEVEL:
        raise ValueError("paired_t knows the 90 % t quantiles only")
    n = len(diffs)
    mean = float(np.mean(diffs))
    if n < 2:
        return mean, (math.nan, math.nan)
    half = T90[min(n - 1, len(T90)) - 1] * float(np.std(diffs, ddof=1)) / math.sqrt(n)
    return mean, (mean - half, mean + half)


def rule_curves(runs: Sequence[Mapping[str, Any]], min_points: int = 3) -> dict[str, dict[float, SeedCurves]]:
    """rule -> size -> paired seed curves, from run rows {"rule", "value", "eta", "seed", "val_loss"}; a curve
    with fewer than `min_points` points that every seed finished (unfinished or diverged) is left out (the
    analysis's tables list it)."""
    grouped: dict[str, dict[float, list[Mapping[str, Any]]]] = {}
    for r in runs:
        grouped.setdefault(r["rule"], {}).setdefault(r["value"], []).append(r)
    out: dict[str, dict[float, SeedCurves]] = {}
    for rule, sizes in grouped.items():
        curves = {v: curves_from_runs(rows) for v, rows in sorted(sizes.items())}
        kept = {v: c for v, c in curves.items() if len(c.x) >= min_points}
        if kept:
            out[rule] = kept
    return out


def drifts_from_runs(runs: Sequence[Mapping[str, Any]], base: float) -> list[dict[str, Any]]:
    """Every rule's drift from the base size to each other size: {"rule", "from", "to", "octaves", "ci90",
    "verdict"} plus both intervals, the two optima and the pooled residual sd."""
    out = []
    for rule, curves in rule_curves(runs).items():
        if base not in curves:
            continue
        sd = pooled_residual_sd(list(curves.values()))
        for size, curve in curves.items():
            if size == base or curve.seeds != curves[base].seeds:  # unpaired (a curve still running): no drift
                continue
            est = drift(curves[base], curve, sd)
            lo, hi = est.ci90
            out.append({
                "rule": rule, "from": base, "to": size, "octaves": est.value, "ci90": [lo, hi],
                "verdict": verdict(lo, hi), "ci90_seed": list(est.ci_seed), "ci90_param": list(est.ci_param),
                "base_opt": optimum(curves[base]), "target_opt": optimum(curve), "residual_sd": sd,
            })  # fmt: skip
    return out


def drift_markdown(drifts: Sequence[Mapping[str, Any]], hp: str = "eta") -> str:
    """The drifts as a Markdown table (octaves of the fitted optimum, 90 % intervals, verdict)."""
    lines = [
        f"### Drift of the fitted {hp} optimum (drift protocol: quadratic in log2 {hp}, paired seed and parametric "
        "bootstraps, 90 %)",
        "",
        "| rule | from | to | drift (octaves) | seed bootstrap | parametric | hull | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    if not drifts:
        lines.append("| (not applied: the protocol needs 2+ seeds and 3+ points every seed finished per curve) |")
    for d in drifts:
        cells = [f"[{d[k][0]:+.2f}, {d[k][1]:+.2f}]" for k in ("ci90_seed", "ci90_param", "ci90")]
        lines.append(f"| {d['rule']} | {d['from']:g} | {d['to']:g} | {d['octaves']:+.2f} | {' | '.join(cells)} | "
                     f"{d['verdict']} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def transfer_drifts(
    rules: Sequence[str], size_field: str, hp: str, base: float, records: Sequence[Any]
) -> list[dict[str, Any]]:
    """The protocol's drifts of a `scalec transfer` study from its run records (records with a `config` and a
    `loss`); empty with fewer than 2 seeds or 3 grid points, where no interval can be drawn."""
    runs = []
    for r in records:
        c = r.config
        if c["rule"] in rules and r.status in ("finished", "diverged"):
            loss = r.loss
            runs.append({"rule": c["rule"], "value": float(c[size_field]), "eta": float(c["hp"][hp]),
                         "seed": int(c["seed"]), "val_loss": loss if math.isfinite(loss) else None})  # fmt: skip
    if len({r["seed"] for r in runs}) < 2:
        return []
    try:
        return drifts_from_runs(runs, float(base))
    except ValueError:  # a curve with fewer than 3 points every seed finished: no fit
        return []
