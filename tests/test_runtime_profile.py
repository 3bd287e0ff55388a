"""Depth profiles at run time: per-block LRs of plans at any depth against hand-derived numbers, and each knot as
a tunable dimension of sweeps, searches and `--hp`."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import scalec
from scalec.parsing import parse_hp_specs, parse_hp_values
from scalec.runtime.plan.planner import make_plan
from scalec.runtime.studies.hp_grid import resolve_specs
from scalec.runtime.studies.search_settings import default_dims
from scalec.runtime.trainer.gpt import GPT, GPTConfig

# CompleteP's hidden lr at n = 64 (base 128): eta / m_N * m_L^(alpha - 1) = 2^-8 * 2 * 1 (alpha = 1), any depth
HIDDEN_LR = 2**-7


def _hidden_lrs(p, depth: int, **knots: float) -> list[float]:
    model = GPT(GPTConfig(width=64, depth=depth, head_dim=16, seq_len=16))
    plan = make_plan(p, model, {"n": 64, "L": depth, "d_head": 16}, p.hparams(**knots))
    lrs = [plan.entry(f"blocks.{b}.attn.q.weight").lr for b in range(depth)]
    assert [plan.entry(f"blocks.{b}.mlp.down.weight").lr for b in range(depth)] == lrs  # every hidden matrix
    assert plan.entry("blocks.0.attn_norm.weight").lr == pytest.approx(2**-8)  # norms are not profiled
    return lrs


def test_depth_32_plan_gets_the_profiles_per_block_lr_factors():
    # Knots (2, 1, 1/2) at u = 0, 1/2, 1; block l of 32 at u = (l + 1/2)/32. Both segments fall on one line in log2
    # space: log2 factor = 1 - 2u, so the factor is 2^((31 - 2l)/32) (block 0: 2^(31/32), block 31: 2^(-31/32)).
    lrs = _hidden_lrs(scalec.load("completep_profile"), 32, lr_depth_0=2, lr_depth_1=1, lr_depth_2=0.5)
    for block, lr in enumerate(lrs):
        assert lr == pytest.approx(HIDDEN_LR * 2 ** ((31 - 2 * block) / 32), rel=1e-12)


def test_profile_is_piecewise_log_linear_between_knots():
    # Knots (1, 4, 1): log2 factor = 4u over u in [0, 1/2], 4(1 - u) over [1/2, 1]; at depth 32 block l gets
    # 2^((2l + 1)/16) for l <= 15 and 2^((63 - 2l)/16) for l >= 16 (symmetric about the middle knot).
    lrs = _hidden_lrs(scalec.load("completep_profile"), 32, lr_depth_0=1, lr_depth_1=4, lr_depth_2=1)
    for block, lr in enumerate(lrs):
        exponent = (2 * block + 1) / 16 if block <= 15 else (63 - 2 * block) / 16
        assert lr == pytest.approx(HIDDEN_LR * 2**exponent, rel=1e-12)


def test_a_search_result_at_depth_4_carries_over_to_depth_32_unchanged():
    p = scalec.load("completep_profile")
    found = {"lr_depth_0": 2.0, "lr_depth_1": 1.0, "lr_depth_2": 0.5}  # what a search at depth 4 returns
    # depth 4: u = (l + 1/2)/4, factor 2^(1 - 2u) = 2^((3 - 2l)/4)
    assert _hidden_lrs(p, 4, **found) == pytest.approx([HIDDEN_LR * 2 ** ((3 - 2 * b) / 4) for b in range(4)])
    deep = _hidden_lrs(p, 32, **found)
    assert deep[0] == pytest.approx(HIDDEN_LR * 2 ** (31 / 32)) and deep[-1] == pytest.approx(
        HIDDEN_LR * 2 ** -(31 / 32)
    )


def test_one_knot_is_a_constant(write_rule):
    p = scalec.load(
        write_rule(
            "k1",
            'parameterisation K1 extends CompleteP\n  "x"\n  hp c = 1 in [1/8, 8] knots 1\n  role hidden: lr *= c(l)\n',
        )
    )
    assert [k for k in p.module.HP_SPACE if k.startswith("c")] == ["c_0"]
    assert _hidden_lrs(p, 4, c_0=3) == pytest.approx([HIDDEN_LR * 3] * 4)
    assert p.module.profile_value((3.0,), 0.9) == 3.0


def test_profile_is_constant_beyond_its_end_knots():
    m = scalec.load("completep_profile").module
    assert m.profile_value((2.0, 1.0, 0.5), -0.25) == 2.0
    assert m.profile_value((2.0, 1.0, 0.5), 1.5) == 0.5
    assert m.profile_value((2.0, 1.0, 0.5), 0.75) == pytest.approx(2**-0.5)  # halfway between knots 1 and 2
    with pytest.raises(ValueError, match="block index 32 is outside 0..31"):
        m.depth_profile((2.0, 1.0, 0.5), 32, 32.0)


def test_each_knot_is_a_tunable_dimension_of_search_sweep_and_hp():
    p = scalec.load("completep_profile")
    dims = default_dims(p.module.HP_SPACE, ["eta", "lr_depth_*"])
    assert [(d.name, d.low, d.high, d.log, d.default) for d in dims] == [
        ("eta", 2**-16, 2**-2, True, 2**-8),
        ("lr_depth_0", 1 / 8, 8.0, True, 1.0),
        ("lr_depth_1", 1 / 8, 8.0, True, 1.0),
        ("lr_depth_2", 1 / 8, 8.0, True, 1.0),
    ]
    (spec,) = resolve_specs(parse_hp_specs(["lr_depth_1=1/4..4:3"]), p.module.HP_SPACE, p.name)
    assert spec.grid() == (0.25, 1.0, 4.0)  # log-spaced: the knot's own scale
    values = parse_hp_values(parse_hp_specs(["lr_depth_0=2,lr_depth_1=1,lr_depth_2=1/2"]), p, "train")
    assert values == {"lr_depth_0": 2.0, "lr_depth_1": 1.0, "lr_depth_2": 0.5}


def test_a_child_may_change_a_profiles_range_but_keeps_its_knots(write_rule):
    src = 'parameterisation Q extends CompleteP_profile\n  "x"\n  hp lr_depth = 1 in [1/2, 2] log knots 3\n'
    space = scalec.load(write_rule("q", src)).module.HP_SPACE
    assert [(k, s.low, s.high) for k, s in space.items() if k.startswith("lr_depth")] == [
        ("lr_depth_0", 0.5, 2.0),
        ("lr_depth_1", 0.5, 2.0),
        ("lr_depth_2", 0.5, 2.0),
    ]


@pytest.mark.slow
def test_cli_show_prints_the_first_and_last_blocks_values():
    knots = "lr_depth_0=2,lr_depth_1=1,lr_depth_2=1/2"
    cmd = [sys.executable, "-m", "scalec.cli", "show", "completep_profile", "-n", "64", "-L", "32", "--hp", knots]
    res = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"})
    assert res.returncode == 0, res.stderr
    first, last = HIDDEN_LR * 2 ** (31 / 32), HIDDEN_LR * 2 ** (-31 / 32)
    assert f"{first:.6g} .. {last:.6g} (blocks 0 .. L-1)" in res.stdout


@pytest.mark.slow  # CLI run (~1 s)
def test_show_refuses_knots_outside_the_declared_range_that_leave_an_hp_domain(write_rule):
    """(9 - p(l))/8 is proven positive over the declared [1/8, 8]; a knot of 100 makes block 0's lr negative
    (hand-derived: eta 2^-8 x (9 - 100^(7/8) ...)/8 < 0), which `show` refuses as make_plan does, printing nothing."""
    from typer.testing import CliRunner

    from scalec.cli import app

    path = write_rule(
        "neg",
        'parameterisation Neg extends CompleteP\n  "x"\n  hp p = 1 in [1/8, 8] log knots 2\n'
        "  role hidden: lr *= (9 - p(l))/8\n",
    )
    ok = CliRunner().invoke(app, ["show", str(path), "-n", "64", "-L", "4", "--hp", "p_0=8"])
    assert ok.exit_code == 0, ok.output
    bad = CliRunner().invoke(app, ["show", str(path), "-n", "64", "-L", "4", "--hp", "p_0=100"])
    assert bad.exit_code == 1 and "Neg at n=64" not in bad.output
    assert "role 'attn.q' gets lr = " in bad.output and "on block 0" in bad.output and "outside lr > 0" in bad.output
