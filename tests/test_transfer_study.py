"""Transfer analysis on a synthetic objective: log2 optimum fit, drift per size, transfer gap, outputs."""

from __future__ import annotations

import json
import math

import pytest

from scalec.errors import ScalecError
from scalec.runtime.studies.hp_grid import HPSpecError, parse_hp_spec
from scalec.runtime.studies.sweep import SweepSpec, sweep_configs
from scalec.runtime.studies.transfer import TransferSpec, analyse, figure, fit_optimum, run_transfer, transfer_configs


def test_parabola_vertex_is_found_between_grid_points():
    values = [2.0**k for k in range(-10, -3)]
    losses = [3 + 0.1 * (math.log2(v) + 6.6) ** 2 for v in values]
    o = fit_optimum(values, losses)
    assert o.fitted and o.best_value == 2**-7 and o.log2_opt == pytest.approx(-6.6)


def test_optimum_at_grid_edge_is_flagged_not_extrapolated():
    values = [2.0**k for k in range(-10, -6)]
    o = fit_optimum(values, [1.0, 2.0, 3.0, 4.0])
    assert o.edge and not o.fitted and o.log2_opt == -10


def test_diverged_neighbour_keeps_the_grid_optimum():
    o = fit_optimum([1.0, 2.0, 4.0], [2.0, 1.0, math.inf])
    assert not o.fitted and o.best_value == 2.0


def test_no_finite_point_gives_no_optimum():
    o = fit_optimum([1.0, 2.0], [math.inf, math.inf])
    assert o.best_value is None and o.opt is None


def synthetic(config, out_dir):
    """'mup' keeps its optimum at 2^-7 at every width; 'sp' moves it 1/2 octave left per doubling of width;
    both diverge 3 octaves above their optimum."""
    x = math.log2(config["hp"]["eta"])
    shift = 0.0 if config["rule"] == "mup" else -0.5 * math.log2(config["width"] / 32)
    opt = -7 + shift
    if x > opt + 3:
        return {"status": "diverged", "final_val_loss": None}
    width_gain = 0.2 * math.log2(config["width"] / 32)
    return {"status": "finished", "final_val_loss": 3 - width_gain + 0.05 * (x - opt) ** 2}


@pytest.mark.slow
def test_transfer_study_reports_drift_and_gap(tmp_path):
    spec = TransferSpec(
        ["sp", "mup"], "width", [32, 64, 128, 256], parse_hp_spec("eta=2^-10..2^-4:7"), {"depth": 2}, seeds=1
    )
    assert len(transfer_configs(spec)) == 2 * 4 * 7
    results = run_transfer(spec, tmp_path, synthetic)
    sp, mup = results
    assert mup.max_drift == pytest.approx(0.0, abs=1e-9)
    assert sp.drift["256"] == pytest.approx(-1.5, abs=1e-6)
    assert mup.gap == pytest.approx(0.0) and sp.gap > 0.05
    assert sp.curves[-1].losses[-1] == math.inf  # 2^-4 is > 3 octaves above sp's optimum at n=256
    data = json.loads((tmp_path / "transfer.json").read_text())
    assert data["rules"][0]["curves"][-1]["status"][-1] == "diverged"
    md = (tmp_path / "transfer.md").read_text()
    assert "| mup | n=256 | 2^-7 | 2^-7.00 | +0.00 |" in md and "diverged" in md
    assert (tmp_path / "transfer.png").stat().st_size > 10_000
    # rerun: everything comes from the store
    calls = []
    run_transfer(spec, tmp_path, lambda c, d: calls.append(c) or synthetic(c, d))
    assert calls == []


def spiky(config, out_dir):
    """One loss far above the rest (the old y-axis cut at 4x the lower quartile's gap, hiding it)."""
    x = math.log2(config["hp"]["eta"])
    return {"status": "finished", "final_val_loss": 9.0 if x == -4 else 3 + 0.01 * (x + 7) ** 2}


@pytest.mark.slow  # imports matplotlib and renders (~1 s)
def test_transfer_figure_shows_every_measured_point(tmp_path):
    import matplotlib.pyplot as plt

    spec = TransferSpec(["mup"], "width", [32, 64], parse_hp_spec("eta=2^-10..2^-3:8"), {"depth": 2})
    records = [RunStoreLike(c, spiky(c, None)) for c in transfer_configs(spec)]
    records[0] = RunStoreLike(records[0].config, {"status": "diverged"})
    fig = figure(spec, analyse(spec, records))
    for ax in fig.axes:
        low, high = ax.get_ylim()
        for line in (ln for ln in ax.get_lines() if ln.get_marker() in ("o", "x")):  # measured and diverged
            ys = [y for y in line.get_ydata() if math.isfinite(y)]
            assert all(low < y < high for y in ys), (line.get_label(), ys, (low, high))
    marks = [y for ax in fig.axes for line in ax.get_lines() if line.get_marker() == "x" for y in line.get_ydata()]
    assert marks and min(marks) > 9.0  # diverged marks sit above the highest loss (9.0)
    plt.close(fig)


class RunStoreLike:
    """A RunRecord's two fields analyse() reads."""

    def __init__(self, config, summary):
        self.config = config
        status = summary.get("status", "finished")
        self.loss = math.inf if status == "diverged" else summary["final_val_loss"]


def test_zero_seeds_and_huge_grids_are_refused_before_running():
    eta = parse_hp_spec("eta=2^-10..2^-4:7")
    with pytest.raises(ScalecError, match="--seeds 0: give at least 1 seed"):
        TransferSpec(["mup"], "width", [32, 64], eta, {}, seeds=0)
    with pytest.raises(ScalecError, match="--seeds 0"):
        SweepSpec({}, [eta], seeds=0)
    with pytest.raises(HPSpecError, match="a grid of 100000000 points is beyond the bound of 10000"):
        sweep_configs(SweepSpec({}, [parse_hp_spec("eta=2^-10..2^-6:100000000")]))
    lr = parse_hp_spec("lr[mlp.down]=1/4..4:200")
    with pytest.raises(HPSpecError, match="the grid has 40000 points"):
        sweep_configs(SweepSpec({}, [parse_hp_spec("eta=2^-10..2^-6:200"), lr]))
    with pytest.raises(ScalecError, match="the study has 12000 runs"):
        sweep_configs(SweepSpec({}, [parse_hp_spec("eta=2^-10..2^-6:4000")], seeds=3))
