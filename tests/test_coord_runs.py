"""compare's coordinate checks as one set of runs: a point is shared only by exactly identical plans, and the
shared, parallel runs give the curves the serial per-rule checks give."""

from __future__ import annotations

import pytest

import scalec
from scalec.runtime.studies.coord_check import CoordCheckConfig, load_batches, run_coord_check
from scalec.runtime.studies.coord_runs import run_coord_checks, shared_points
from scalec.runtime.studies.coord_subject import GPTSubject


@pytest.mark.slow
def test_the_readme_job_shares_only_the_base_shape_and_each_rules_corner():
    """sp, mup, completep, completedp at the default sweeps: 32 points; each rule's (64, 2) sits in both of its
    sweeps, and at the base shape (n=128, L=2 in all four files) every rule is the identity."""
    rules = [scalec.load(n) for n in ("sp", "mup", "completep", "completedp")]
    assert {(p.module.BASE.n, p.module.BASE.L) for p in rules} == {(128, 2)}
    shared = shared_points([(p, CoordCheckConfig()) for p in rules], GPTSubject())
    assert shared.total == 32 and len(shared.distinct) == 25
    used = [k for keys in shared.keys for k in keys.values()]
    repeated = {(shared.distinct[k].width, shared.distinct[k].depth) for k in set(used) if used.count(k) > 1}
    assert repeated == {(128, 2)}


def test_points_are_shared_by_exactly_identical_plans_only(write_rule):
    copy = scalec.load(write_rule("copy", 'parameterisation MuPCopy extends muP\n  "the same rules"\n'))
    mup = scalec.load("mup")
    cfg = CoordCheckConfig(widths=(32, 64), depths=(1, 2), steps=2, seeds=1)
    nudged = CoordCheckConfig(widths=(32, 64), depths=(1, 2), steps=2, seeds=1, hp={"eta": 2.0**-6 * (1 + 2**-40)})
    subject = GPTSubject()
    same = shared_points([(mup, cfg), (copy, cfg)], subject)
    assert same.keys[0] == same.keys[1] and len(same.distinct) == 3  # another name, the same numbers: shared
    apart = shared_points([(mup, cfg), (mup, nudged)], subject)
    assert not set(apart.keys[0].values()) & set(apart.keys[1].values())  # one lr 2^-40 apart: nothing shared
    more_seeds = shared_points([(mup, cfg), (mup, CoordCheckConfig(widths=(32, 64), depths=(1, 2), seeds=2))], subject)
    assert len(more_seeds.distinct) == 6


@pytest.mark.slow
def test_shared_parallel_runs_give_the_serial_curves(write_rule):
    rules = [scalec.load("mup"), scalec.load("sp")]
    cfg = CoordCheckConfig(widths=(32, 64), depths=(1, 2), steps=2, seeds=1)
    batches, probe = load_batches(None, cfg)
    parallel, _, shared = run_coord_checks([(p, cfg) for p in rules], batches, probe, workers=2)
    assert shared.total == 8 and len(shared.distinct) == 6
    for p, result in zip(rules, parallel, strict=True):
        serial = run_coord_check(p, cfg, batches, probe)
        for axis, sweep in serial.sweeps.items():
            assert result.sweeps[axis].values == sweep.values, (p.name, axis)
            assert result.sweeps[axis].loss == sweep.loss
        assert [v.status for v in result.verdicts] == [v.status for v in serial.verdicts]
