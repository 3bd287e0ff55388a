"""Transfer analysis on a synthetic objective: log2 optimum fit, drift per size, transfer gap, outputs."""

from __future__ import annotations

import json
import math

import pytest

from scalec.runtime.studies.hp_grid import parse_hp_spec
from scalec.runtime.studies.transfer import TransferSpec, fit_optimum, run_transfer, transfer_configs


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
