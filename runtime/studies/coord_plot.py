"""Coordinate-check plots in the style of the muP / CompleteP papers: one panel per training step, x = width
(or depth) on a log scale, one line per module; top row activation RMS, bottom row update RMS |h_t - h_0|."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from scalec.runtime.studies.coord_metrics import METRIC_TITLES, METRICS, MODULES

if TYPE_CHECKING:
    from scalec.runtime.studies.coord_check import CoordCheckResult


def panel_steps(steps: int) -> list[int]:
    """The steps shown as panels: t = 1, the middle step and the last step (deduplicated)."""
    return sorted({1, max(1, (steps + 1) // 2), steps})


def plot_sweep(result: CoordCheckResult, sweep: str, path: str | Path, dpi: int = 90) -> Path:
    """Write one PNG for one sweep ("width" or "depth") of a coordinate check; return its path."""
    import matplotlib as mpl  # optional-heavy: loaded when a plot is drawn, not when a coordinate check runs
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    s = result.sweeps[sweep]
    ts = panel_steps(result.config.steps)
    # A bare Figure on the Agg canvas: no pyplot state, no GUI backend, safe in threads and on headless hosts.
    fig = Figure(figsize=(3.6 * len(ts), 3.1 * len(METRICS)))
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(METRICS), len(ts), sharex=True, squeeze=False)
    colors = mpl.colormaps["tab10"]
    for row, metric in enumerate(METRICS):
        for col, t in enumerate(ts):
            ax = axes[row][col]
            for k, mod in enumerate(MODULES):
                ys = [s.values[metric][mod][i][t] for i in range(len(s.xs))]
                slope = s.slope(metric, mod, t)
                ax.plot(s.xs, ys, marker="o", ms=3, lw=1.4, color=colors(k), label=f"{mod} ({slope:+.2f})")
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xticks(s.xs, [str(x) for x in s.xs])
            ax.minorticks_off()
            ax.grid(True, which="major", alpha=0.3)
            ax.set_title(f"t = {t}", fontsize=9)
            if col == 0:
                ax.set_ylabel(METRIC_TITLES[metric], fontsize=9)
            if row == len(METRICS) - 1:
                ax.set_xlabel(sweep, fontsize=9)
            ax.legend(fontsize=6, loc="best", title="module (log-log slope)", title_fontsize=6)
    fixed = ", ".join(f"{k}={v}" for k, v in s.fixed.items())
    status = result.status(sweep)
    fig.suptitle(f"{result.rule}: coordinate check vs {sweep} ({fixed}) - {status}", fontsize=11)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return path


def plot_all(result: CoordCheckResult, out_dir: str | Path) -> dict[str, Path]:
    """One PNG per sweep, `coord_<sweep>.png` in `out_dir`."""
    return {sweep: plot_sweep(result, sweep, Path(out_dir) / f"coord_{sweep}.png") for sweep in result.sweeps}
