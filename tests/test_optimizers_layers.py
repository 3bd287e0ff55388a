"""Per-tensor names in rule expressions: fan_in, fan_out (from the binding) and the block index l with L."""

from __future__ import annotations

import pytest

import scalec
from scalec.compiler.analysis import role_exps
from scalec.dsl.errors import RuleError
from scalec.runtime.plan.planner import make_plan
from scalec.runtime.trainer.gpt import GPT, GPTConfig

LAYERED = """parameterisation Layered extends muP
  "x"
  role hidden: lr *= (1 + l) / L
  role mlp.down: init_std = sigma * (fan_in / (3 * n0))^(-1/2) * m_N^(1/2)
"""


def test_block_index_and_fans_reach_each_tensor(write_rule):
    p = scalec.load(write_rule("layered", LAYERED))
    model = GPT(GPTConfig(width=64, depth=4, head_dim=16, seq_len=16))
    plan = make_plan(p, model, {"n": 64, "L": 4, "d_head": 16})
    mup_lr = 2**-8 / (64 / 128)  # muP hidden lr at m_N = 1/2
    for block in range(4):
        e = plan.entry(f"blocks.{block}.attn.q.weight")
        assert e.lr == pytest.approx(mup_lr * (1 + block) / 4)
    # the bundled GPT's SwiGLU hidden width is 3n: mlp.down's fan_in is 192 at n = 64
    down = plan.entry("blocks.0.mlp.down.weight")
    assert down.fan_in == 3 * 64
    assert down.init_std == pytest.approx(0.02 * (192 / (3 * 128)) ** -0.5 * 0.5**0.5)
    assert plan.entry("embed.weight").lr == pytest.approx(2**-8)  # no block index outside blocks


def test_per_tensor_names_are_analysed_per_role(write_rule):
    p = scalec.load(write_rule("layered", LAYERED))
    # (1 + l) / L at a fixed relative depth is width- and depth-free: muP's exponents are unchanged
    assert role_exps(p.ir, "attn.q", "lr")["L"] == 0 and role_exps(p.ir, "attn.q", "lr")["n"] == -1
    # fan_in of mlp.down grows like width: (fan_in)^-1/2 * m_N^1/2 is width-free
    assert role_exps(p.ir, "mlp.down", "init_std")["n"] == 0
    assert any("block index l" in w for w in p.report.warnings)


def test_block_index_outside_blocks_is_one_located_error(write_rule):
    path = write_rule("bad", 'parameterisation Bad extends SP\n  "x"\n  role embed: lr *= (1 + l) / L\n')
    with pytest.raises(RuleError) as exc:
        scalec.load(path)
    assert f"{path}:3:" in exc.value.headline and "'embed'" in exc.value.headline


def test_fan_symbols_are_not_sites(write_rule):
    path = write_rule("bad", 'parameterisation Bad extends SP\n  "x"\n  site output.mult = fan_in^-1\n')
    with pytest.raises(RuleError, match="fan_in"):
        scalec.load(path)
