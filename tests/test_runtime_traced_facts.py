"""What names cannot say, a traced forward pass does: a readout tied in `forward` (issue 23 item 1) and the head
dimension of a model without a config (item 2). Never a plan with a multiplier silently unapplied."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import scalec
from scalec.runtime.plan.planner import PlanError, make_plan

SIGMA, ETA = 0.02, 2**-8  # sp.scale's defaults, inherited by mup and completep


class ForwardTied(nn.Module):
    """A byte LM whose logits reuse the embedding's tensor in forward, with no readout module."""

    def __init__(self, d: int, how: str = "matmul", vocab: int = 64) -> None:
        super().__init__()
        self.tokens = nn.Embedding(vocab, d)
        self.fc1, self.fc2 = nn.Linear(d, 2 * d), nn.Linear(2 * d, d)
        self.how = how

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.tokens(idx)
        x = x + self.fc2(F.relu(self.fc1(x)))
        if self.how == "matmul":
            return x @ self.tokens.weight.t()
        return F.linear(x, self.tokens.weight)


TIED_PATTERNS = {"tokens.weight": "embed", "fc1.weight": "mlp.up", "fc2.weight": "mlp.down", "*.bias": "bias"}
TIED = r"output.mult = 0.25 \(cannot be folded: the logits are read from the embedding's tensor 'tokens.weight'"


@pytest.mark.parametrize("how", ["matmul", "linear"])
@pytest.mark.parametrize("rule", ["mup", "completep"])
def test_readout_tied_in_forward_is_refused_or_planned_as_a_shared_readout(rule, how):
    """mup's MuSharedReadout at width 512 over base 128: width_mult 4, so the logits need x 1/4 (muP's readout
    1/m_N; CompleteP's unembedding multiplier m_N^-1 likewise), and the tensor trains as the embedding."""
    rules = scalec.load(rule)
    shape = {"n": 512, "L": rules.module.BASE.L}  # depth at its base: no residual multiplier to fold
    for fold in (False, True):
        with pytest.raises(PlanError, match=TIED):
            make_plan(scalec.load(rule, fold=fold), ForwardTied(512, how), shape, patterns=TIED_PATTERNS)
    plan = make_plan(rules, ForwardTied(512, how), shape, patterns=TIED_PATTERNS, applied_sites={"output.mult"})
    assert plan.multipliers["output.mult"] == pytest.approx(0.25)
    tokens = plan.entry("tokens.weight")
    assert (tokens.role, tokens.init_std, tokens.lr) == ("embed", pytest.approx(SIGMA), pytest.approx(ETA))


@pytest.mark.slow
def test_readout_tied_in_forward_is_found_when_roles_are_inferred():
    with pytest.raises(PlanError, match=TIED):
        make_plan(
            scalec.load("mup", fold=True),
            ForwardTied(512),
            {"n": 512, "L": 1},
            preset="infer",
            base_model=ForwardTied(128),
        )


class Attention(nn.Module):
    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v, self.o = (nn.Linear(d, d, bias=False) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = (m(x).view(B, T, self.heads, C // self.heads).transpose(1, 2) for m in (self.q, self.k, self.v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # the default scale 1/sqrt(head_dim)
        return self.o(y.transpose(1, 2).reshape(B, T, C))


class HeadDimModel(nn.Module):
    """One attention block, width 128 in 2 heads of 64, no config; `declare` sets a `head_dim` attribute."""

    def __init__(self, declare: bool, float_input: bool = False) -> None:
        super().__init__()
        self.wte = nn.Embedding(64, 128)
        self.attn = Attention(128, 2)
        self.head = nn.Linear(128, 64, bias=False)
        self.float_input = float_input
        if declare:
            self.head_dim = 64

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x if self.float_input else self.wte(x)
        return self.head(x + self.attn(x))


HEAD_PATTERNS = {
    "wte.weight": "embed",
    "attn.q.weight": "attn.q",
    "attn.k.weight": "attn.k",
    "attn.v.weight": "attn.v",
    "attn.o.weight": "attn.o",
    "head.weight": "unembed",
}


@pytest.mark.parametrize("declare", [True, False], ids=["head_dim attribute", "traced attention"])
def test_head_dim_without_config_is_read_from_the_model_not_the_rules_base(declare):
    """muP at d_head = 64 (base 32) wants the attention scale sqrt(32)/64; the model applies 1/8, so the
    queries absorb c = (sqrt(32)/64) / (1/8) = 1/sqrt(2): init std and lr x c (n = n0: nothing else moves)."""
    c = math.sqrt(32) / 64 * 8
    with pytest.raises(PlanError, match=r"attn.scale = 0.0883883 that HeadDimModel does not apply"):
        make_plan(scalec.load("mup"), HeadDimModel(declare), {"n": 128, "L": 1}, patterns=HEAD_PATTERNS)
    plan = make_plan(scalec.load("mup", fold=True), HeadDimModel(declare), {"n": 128, "L": 1}, patterns=HEAD_PATTERNS)
    assert plan.axes["d_head"] == 64
    q = plan.entry("attn.q.weight")
    assert (q.init_std, q.lr) == pytest.approx((SIGMA * c, ETA * c))
    assert plan.multipliers["attn.scale"] == pytest.approx(1 / 8)  # what the model applies by itself


def test_head_dim_that_nothing_reveals_is_refused_when_the_rule_needs_it():
    untraceable = HeadDimModel(declare=False, float_input=True)  # the default token batch cannot run it
    with pytest.raises(PlanError, match="muP depends on the head dimension and HeadDimModel declares none") as info:
        make_plan(scalec.load("mup", fold=True), untraceable, {"n": 128, "L": 1}, patterns=HEAD_PATTERNS)
    assert "\n" not in str(info.value)
    sp = make_plan(scalec.load("sp"), untraceable, {"n": 128, "L": 1}, patterns=HEAD_PATTERNS)  # SP: no d_head rule
    assert sp.axes["d_head"] == 32
    with pytest.raises(PlanError, match="the shape says d_head=32 but the model has d_head=64"):
        make_plan(scalec.load("mup"), HeadDimModel(True), {"n": 128, "L": 1, "d_head": 32}, patterns=HEAD_PATTERNS)


def _float_mlp(d: int) -> nn.Module:
    return nn.Sequential(nn.Linear(3, d), nn.GELU(), nn.Linear(d, d), nn.GELU(), nn.Linear(d, 1))


class FloatAttention(nn.Module):
    """Float inputs (the default token probe cannot run it) and an attention call with head dimension 16."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.inp, self.qkv, self.out = nn.Linear(3, d), nn.Linear(d, 3 * d), nn.Linear(d, 1)
        self.d = d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(x)
        q, k, v = self.qkv(h).view(x.shape[0], x.shape[1], 3, self.d // 16, 16).unbind(2)
        a = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return self.out(a.transpose(1, 2).reshape(x.shape[0], x.shape[1], self.d))


def test_inferred_roles_without_an_example_plan_when_a_static_trace_shows_no_attention():
    """A float-input MLP cannot run on the default token probe; torch.fx traces it without inputs and finds no
    attention call, so muP's d_head-dependent attention scale reaches no tensor: planned.  A model that does call
    attention is still refused: its head dimension is unknown."""
    plan = make_plan(
        scalec.load("mup", fold=True), _float_mlp(64), {"n": 64, "L": 1}, preset="infer", base_model=_float_mlp(128)
    )
    assert plan.axes["d_head"] == 32
    with pytest.raises(PlanError, match="depends on the head dimension"):
        make_plan(
            scalec.load("mup", fold=True),
            FloatAttention(64),
            {"n": 64, "L": 1},
            preset="infer",
            base_model=FloatAttention(128),
        )
