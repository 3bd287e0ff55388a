"""The drift protocol (issue 20) against hand-derived numbers: vertices of known quadratics, grid extension, the
pooled residual sd, paired bootstraps, the t interval and a constructed case for each verdict."""

from __future__ import annotations

import math

import numpy as np
import pytest

from scalec.runtime.studies import drift_protocol as p

GRID = [-10.0, -9.5, -9.0, -8.5, -8.0]


def _curve(vertices: list[float], offsets: list[float] | None = None, a: float = 0.2) -> p.SeedCurves:
    """Seeds whose losses are a (x - vertex)^2 + offset on GRID."""
    offsets = offsets or [0.0] * len(vertices)
    losses = tuple(tuple(a * (x - v) ** 2 + 2.0 + o for x in GRID) for v, o in zip(vertices, offsets, strict=True))
    return p.SeedCurves(tuple(GRID), tuple(range(len(vertices))), losses)


def test_the_grid_is_five_points_half_an_octave_apart_around_the_centre():
    assert p.centred_grid(-9.0) == [-10.0, -9.5, -9.0, -8.5, -8.0]


def test_the_grid_grows_by_one_point_beyond_the_edge_that_holds_the_best():
    assert p.extend_grid(GRID, [2.0, 2.1, 2.2, 2.3, 2.4]) == [-10.5, *GRID]
    assert p.extend_grid(GRID, [2.4, 2.3, 2.2, 2.1, 2.0]) == [*GRID, -7.5]
    assert p.extend_grid(GRID, [2.4, 2.3, 2.0, 2.1, 2.2]) == GRID
    # a diverged point is never the best: the finite best (-9.5) is interior
    assert p.extend_grid(GRID, [math.inf, 2.0, 2.1, 2.2, 2.3]) == GRID


def test_the_vertex_of_an_exact_quadratic_is_recovered_and_clipped_to_the_grid():
    # y = 3 (x + 8.7)^2 + 1: vertex -8.7
    assert p.vertex(GRID, [3 * (x + 8.7) ** 2 + 1 for x in GRID]) == pytest.approx(-8.7)
    # vertex -7 lies outside [-10, -8]: clipped to -8
    assert p.vertex(GRID, [(x + 7) ** 2 for x in GRID]) == -8.0
    # concave: the lower end of the fit
    assert p.vertex(GRID, [-((x + 8.8) ** 2) for x in GRID]) == -10.0


def test_least_squares_fit_of_noisy_points_matches_the_normal_equations():
    # y = x^2 on x = -1, 0, 1, 2 plus a +0.1 at x = 0: by hand, (a, b, c) = (1, 0, 0) + 0.1 (X^T X)^-1 X^T e0
    x, y = [-1.0, 0.0, 1.0, 2.0], [1.0, 0.1, 1.0, 4.0]
    design = np.array([[xi * xi, xi, 1.0] for xi in x])
    expected = np.linalg.solve(design.T @ design, design.T @ np.array(y))
    assert p.fit_quadratic(x, y) == pytest.approx(tuple(expected))
    assert p.fit_quadratic(x, y) == pytest.approx((1 - 0.025, 0.015, 0.055))  # by hand: 0.1 x (-1/4, 3/20, 11/20)


def test_a_drift_of_exactly_one_octave_has_a_degenerate_interval_and_does_not_transfer():
    base = _curve([-9.0, -9.0, -9.0], offsets=[0.0, 0.05, -0.03])  # offsets cannot move a vertex
    target = _curve([-8.0, -8.0, -8.0], offsets=[0.02, 0.0, 0.04])
    sd = p.pooled_residual_sd([base, target])
    assert sd == pytest.approx(0.0, abs=1e-12)
    est = p.drift(base, target, sd)
    assert est.value == pytest.approx(1.0)
    assert est.ci90 == pytest.approx((1.0, 1.0))
    assert p.verdict(*est.ci90) == p.DOES_NOT_TRANSFER


def test_the_seed_bootstrap_keeps_seeds_paired_across_curves():
    # Each seed drifts by exactly +0.5 while the seeds' own optima spread by 0.6: a paired draw always gives 0.5
    # (equal curvature: the mean curve's vertex is the mean of the vertices); an unpaired one would not.
    base = _curve([-9.3, -9.0, -8.7])
    target = _curve([-8.8, -8.5, -8.2])
    draws = p.seed_bootstrap([base, target], p.drift_statistic)
    assert np.allclose(draws, 0.5)


def test_pooled_residual_sd_removes_seed_offsets_and_counts_the_fit_and_offset_dof():
    d = np.array([0.1, -0.1, 0.0, 0.1, -0.1])  # mean 0: removing each seed's offset leaves it as it is
    q = np.array([0.2 * (x + 9) ** 2 + 2 for x in GRID])
    curve = p.SeedCurves(tuple(GRID), (0, 1), (tuple(q + d + 0.3), tuple(q - d - 0.3)))
    # residuals +-d: ss = 2 * 0.04 = 0.08 over 10 - 3 (quadratic) - 1 (offsets) = 6 dof
    assert p.pooled_residual_sd([curve]) == pytest.approx(math.sqrt(0.08 / 6))


def test_the_exponent_is_the_least_squares_slope_of_the_optima_on_log2_size():
    curves = [_curve([v] * 3) for v in (-8.5, -9.0, -9.6)]  # sizes 2^17, 2^19, 2^21
    est = p.exponent(curves, [17, 19, 21], 0.0)
    assert est.value == pytest.approx((-9.6 - -8.5) / 4)  # slope through three points with x step 2


@pytest.mark.parametrize(
    ("lo", "hi", "expected"),
    [
        (-0.2, 0.3, p.TRANSFERS),  # inside +-0.35
        (-0.35, 0.35, p.TRANSFERS),  # on the band's edges
        (0.4, 0.9, p.DOES_NOT_TRANSFER),  # excludes 0, near end beyond +0.35
        (-1.2, -0.5, p.DOES_NOT_TRANSFER),
        (0.1, 0.5, p.INCONCLUSIVE),  # excludes 0, near end inside the band
        (-0.5, 0.2, p.INCONCLUSIVE),  # includes 0, wider than the band
    ],
)
def test_each_verdict_follows_from_the_interval(lo, hi, expected):
    assert p.verdict(lo, hi) == expected


def test_paired_t_interval_uses_the_90_percent_t_quantile():
    mean, (lo, hi) = p.paired_t([1.0, 2.0, 3.0])  # sd 1, n 3: half width t(0.95, 2) / sqrt(3) = 2.920 / 1.732
    assert mean == 2.0
    assert (lo, hi) == pytest.approx((2 - 2.920 / math.sqrt(3), 2 + 2.920 / math.sqrt(3)))


def test_a_point_where_any_seed_diverged_leaves_the_paired_curves():
    runs = [{"eta": 2.0**x, "seed": s, "val_loss": 2.0 + s} for x in (-10, -9.5, -9) for s in (0, 1)]
    runs[1]["val_loss"] = None  # seed 1 diverged at 2^-10
    curve = p.curves_from_runs(runs)
    assert curve.x == (-9.5, -9.0)
    assert curve.seeds == (0, 1)
    assert curve.losses == ((2.0, 2.0), (3.0, 3.0))


def test_each_seeds_fitted_loss_at_an_eta_is_its_own_quadratic_there():
    curve = _curve([-9.0, -8.5], offsets=[0.0, 0.1])
    assert p.fitted_loss(curve, -9.0) == pytest.approx([2.0, 0.2 * 0.25 + 2.1])
    assert p.seed_optima(curve) == pytest.approx([-9.0, -8.5])


@pytest.mark.slow  # a whole (synthetic) transfer study with its figure
def test_a_transfer_study_with_two_seeds_reports_the_protocols_drifts_and_verdicts(tmp_path):
    import json

    from scalec.runtime.studies.hp_grid import parse_hp_spec
    from scalec.runtime.studies.transfer import TransferSpec, run_transfer

    def synthetic(config, out_dir):  # mup's optimum stays at 2^-7; sp's moves 1/2 octave left per doubling
        x = math.log2(config["hp"]["eta"])
        opt = -7 + (0.0 if config["rule"] == "mup" else -0.5 * math.log2(config["width"] / 32))
        return {"status": "finished", "final_val_loss": 3 + 0.01 * config["seed"] + 0.05 * (x - opt) ** 2}

    spec = TransferSpec(["sp", "mup"], "width", [32, 256], parse_hp_spec("eta=2^-10..2^-5:6"), {"depth": 2}, seeds=2)
    run_transfer(spec, tmp_path, synthetic)
    drifts = {d["rule"]: d for d in json.loads((tmp_path / "transfer.json").read_text())["drifts"]}
    assert drifts["sp"]["octaves"] == pytest.approx(-1.5) and drifts["sp"]["verdict"] == p.DOES_NOT_TRANSFER
    assert drifts["mup"]["octaves"] == pytest.approx(0.0, abs=1e-9) and drifts["mup"]["verdict"] == p.TRANSFERS
    assert "| sp | 32 | 256 | -1.50 |" in (tmp_path / "transfer.md").read_text()
