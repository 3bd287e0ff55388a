"""Fast guards for the quick set (issue 23, item 10): a tied readout, a bias fold and the hot loop's host reads,
which only slow tests guarded; the checkpoint cadence and the CLI's one-line usage errors."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

import scalec
from scalec.cli import OneLineErrors
from scalec.runtime.plan.planner import PlanError, make_plan
from scalec.runtime.trainer.train import Cadence
from tests.test_runtime_applied_sites import CUSTOM_PATTERNS, Custom
from tests.test_runtime_binding import TIED_PATTERNS, TiedLM
from tests.test_trainer_hot_loop import tiny
from tests.tiny_runs import RULE


@pytest.mark.parametrize("rule", ["mup", "mup_table3"])
def test_tied_readout_takes_one_over_m_n_as_the_output_multiplier_and_trains_as_the_embedding(rule):
    # muP (base n0 = 128) at n = 512: the readout's whole factor is the multiplier 1/m_N = 1/4 (by hand; Table 3
    # writes it as init var m_N^-2 and lr m_N^-1, which a shared tensor cannot take); the shared tensor trains as
    # the embedding (init sigma = 0.02, lr eta = 2^-8 unscaled), never as the readout.
    rules = scalec.load(rule, fold=True)
    model = TiedLM(width=512, vocab=32)
    plan = make_plan(rules, model, {"n": 512, "L": 1}, patterns=TIED_PATTERNS, applied_sites={"output.mult"})
    assert plan.multipliers["output.mult"] == pytest.approx(0.25)
    emb = plan.entry("emb.weight")
    assert emb.role == "embed" and emb.tied_with == ("head.weight",)
    assert (emb.init_std, emb.lr) == pytest.approx((0.02, 2**-8))
    with pytest.raises(PlanError, match=r"output.mult = 0.25 .cannot be folded: the readout shares its tensor"):
        make_plan(rules, TiedLM(width=512, vocab=32), {"n": 512, "L": 1}, patterns=TIED_PATTERNS)


def test_a_folded_branch_multiplier_moves_into_the_branchs_last_bias_too():
    # CompleteP alpha = 1/2 at L = 8 (L0 = 2): residual multipliers m_L^-1/2 = 1/2 (by hand). Folded into the
    # branch's last linear (attn.proj, fc2) *and its bias*: lr x 1/2, eps x 2 (Adam's abc-symmetry), as the weight.
    rules = scalec.load("completep", params={"alpha": "1/2"}, fold=True)
    shape = {"n": 64, "L": 8}
    sites = {"residual.attn", "residual.mlp", "output.mult", "attn.scale"}
    applied = make_plan(rules, Custom(64, 8), shape, patterns=CUSTOM_PATTERNS, applied_sites=sites, fold=False)
    folded = make_plan(rules, Custom(64, 8), shape, patterns=CUSTOM_PATTERNS, applied_sites={"attn.scale"})
    assert applied.multipliers["residual.mlp"] == pytest.approx(0.5)
    for name in ("blocks.3.fc2.bias", "blocks.3.fc2.weight", "blocks.3.attn.proj.bias", "blocks.3.attn.proj.weight"):
        a, f = applied.entry(name), folded.entry(name)
        assert f.lr == pytest.approx(a.lr * 0.5) and f.eps == pytest.approx(a.eps / 0.5), name
    assert folded.entry("blocks.3.fc1.bias").lr == pytest.approx(applied.entry("blocks.3.fc1.bias").lr)


def test_a_short_run_reads_the_device_only_at_log_steps(tmp_path, host_reads):
    from scalec.runtime.trainer.train import train

    rule = tmp_path / "tiny.scale"
    rule.write_text(RULE)
    corpus = tmp_path / "corpus.txt"
    rng = np.random.default_rng(0)
    corpus.write_bytes(" ".join(rng.choice(["to", "be", "or", "not"], size=4000)).encode())
    per_step: dict[int, Counter] = {}
    logged = set()

    def on_step(step, record):
        per_step[step] = Counter(host_reads)
        host_reads.clear()
        if record is not None:
            logged.add(step)

    cfg = tiny(str(corpus), rule=str(rule), width=16, depth=1, steps=5, log_every=3, eval_every=5, eval_batches=1)
    summary = train(cfg, rules=scalec.load(str(rule)), on_step=on_step)
    assert summary.status == "finished" and logged == {1, 3, 5}
    assert {s: dict(per_step[s]) for s in (2, 4)} == {2: {}, 4: {}}
    assert all(per_step[s] for s in logged)


def test_a_checkpoint_step_that_is_not_a_log_step_is_still_one():
    # The loop saves checkpoints only in a log step's host work: a checkpoint every 7 steps with logs every 10
    # must make steps 7, 14, ... log steps, or those checkpoints are never written.
    c = Cadence(total=100, first=1, log_every=10, eval_every=50, ckpt_every=7)
    assert c.checkpoints(7) and c.logs(7) and c.logs(14)
    assert not c.logs(8) and c.logs(10) and c.logs(50)
    assert not Cadence(total=100, first=1, log_every=10, eval_every=50, ckpt_every=0).logs(7)


def test_a_usage_error_spanning_lines_prints_as_one_line():
    app = typer.Typer(cls=OneLineErrors, add_completion=False)

    @app.command()
    def go(x: str = typer.Option(..., help="x")) -> None:
        raise typer.BadParameter("first line\n  second   line", param_hint="'--x'")

    @app.command()
    def other() -> None:
        """A second command, so `go` is a subcommand as in scalec."""

    result = CliRunner().invoke(app, ["go", "--x", "1"])
    assert result.exit_code == 2
    assert result.output == "error: Invalid value for '--x': first line second line (see `root go --help`)\n"
