"""`scalec coord-check` at a rule's defaults (issue 23, item 8): it runs at the rule's own default eta, bundled
defaults sit at their measured optimum, and --strict fails the run when a sweep the rule claims does not pass."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

import scalec
from scalec.cli import app
from scalec.commands.coord_check import claimed_sweeps, hp_overrides


def test_coord_check_runs_at_the_rules_own_default_eta():
    # results/width_muon: Muon's optimum is eta 2^-7 at widths 32, 64 and 128; mup_sgd's coordinate check
    # passes at 2^-8 (results/coord_mup_sgd) and diverges at the old global default 2^-6 (SGD lr 1).
    assert hp_overrides(scalec.load("muon"), None, None)["eta"] == 2**-7
    assert hp_overrides(scalec.load("mup_sgd"), None, None)["eta"] == 2**-8
    assert hp_overrides(scalec.load("mup_sgd"), 2**-9, None)["eta"] == 2**-9


def test_the_claimed_sweeps_follow_each_rules_theory():
    # muP: width only; CompleteP / depth-muP / Muon: width and depth; SP: neither (design.md).
    assert claimed_sweeps(scalec.load("sp")) == []
    assert claimed_sweeps(scalec.load("mup")) == ["width"]
    assert claimed_sweeps(scalec.load("mup_sgd")) == ["width"]
    for name in ("completep", "depth_mup", "muon"):
        assert claimed_sweeps(scalec.load(name)) == ["width", "depth"], name


@pytest.fixture
def corpus(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "corpus.txt"
    path.write_bytes(" ".join(rng.choice(["to", "be", "or", "not", "that", "is"], size=20_000)).encode())
    return str(path)


TINY = ["--widths", "32,256", "--depths", "2", "--steps", "3", "--seeds", "1", "--batch", "2", "--seq-len", "16"]


@pytest.mark.slow
def test_strict_fails_a_claimed_sweep_that_does_not_pass(tmp_path, corpus):
    # Adam's eps = 1, far above every gradient: updates ~ lr * g, and muP's gradients shrink with width, so the
    # width sweep muP claims goes lazy (update x0.2 over widths 32 -> 256).
    args = ["coord-check", "mup", *TINY, "--corpus", corpus, "--out", str(tmp_path / "a"), "--hp", "eps=1"]
    result = CliRunner().invoke(app, [*args, "--strict"])
    assert result.exit_code == 1, result.output
    assert "error: --strict: mup claims these sweeps, which did not pass: width: lazy" in result.output
    assert CliRunner().invoke(app, args).exit_code == 0  # without --strict: a report


@pytest.mark.slow
def test_strict_passes_a_rule_that_claims_nothing(tmp_path, corpus):
    args = ["coord-check", "sp", *TINY, "--corpus", corpus, "--out", str(tmp_path / "b"), "--strict"]
    assert CliRunner().invoke(app, args).exit_code == 0
