"""Plan-time folding is one numeric law, each role's optimizer's abc-symmetry (design.md, third round): a model
that takes the folded plan trains exactly like the model that applies the multipliers, for AdamW, SGD (lr x c^2),
independent weight decay (wd unchanged) and Muon (lr x c, eps / c)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import scalec
from scalec.runtime.plan.planner import make_plan
from scalec.runtime.trainer.gpt import GPT, GPTConfig

CFG = GPTConfig(width=32, depth=2, head_dim=8, seq_len=8, vocab=32)
SHAPE = {"n": 32, "L": 2, "d_head": 8}  # n < n0 and d_head < d_head0: output.mult and attn.scale differ from 1


def _train(model: torch.nn.Module, plan, steps: int = 4) -> torch.Tensor:
    opt = plan.optimizer(model)
    x = torch.randint(0, 32, (2, 8), generator=torch.Generator().manual_seed(1))
    for _ in range(steps):
        loss = F.cross_entropy(model(x).flatten(0, 1), x.flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return model(x)


def _pair(rule: str, hp: dict):
    """The plan of a GPT that applies every multiplier, and the plan folding all but the readout's into tensors."""
    rules = scalec.load(rule)
    applied = make_plan(rules, GPT(CFG), SHAPE, hp=hp)
    folded = make_plan(rules, GPT(CFG), SHAPE, hp=hp, applied_sites={"output.mult"}, fold=True)
    return applied, folded


@pytest.mark.slow
@pytest.mark.parametrize(
    "rule, hp, tol",
    [
        ("mup", {"mult[mlp.gate]": 2.0, "mult[attn.v]": 0.5, "lambda": 0.1}, 1e-10),
        ("mup_sgd", {"mult[mlp.gate]": 2.0, "mult[attn.v]": 0.5, "lambda": 0.1}, 1e-10),
        ("mup_indep_wd", {"mult[mlp.gate]": 2.0, "mult[attn.v]": 0.5, "lambda_ind": 0.01}, 1e-10),
        ("muon", {"mult[mlp.gate]": 2.0, "mult[attn.v]": 0.5, "lambda": 0.1}, 1e-5),  # Muon iterates in float32
    ],
)
def test_folded_plan_trains_like_the_applied_multipliers_under_each_optimizers_symmetry(rule, hp, tol):
    applied, folded = _pair(rule, hp)
    assert {"attn.scale -> attn.q", "mult[mlp.gate] -> mlp.gate", "mult[attn.v] -> attn.v"} <= {
        line.split(" (x ")[0] for line in folded.folded
    }
    reference = GPT(CFG, multipliers=applied.multipliers).double()
    ours = GPT(CFG, multipliers=folded.multipliers).double()
    torch.manual_seed(0)
    applied.init_(reference)
    with torch.no_grad():  # the folded tensors hold the applied ones times their multiplier (the init_std ratio)
        for (name, p), q in zip(reference.named_parameters(), ours.parameters(), strict=True):
            a, f = applied.entry(name).init_std, folded.entry(name).init_std
            q.copy_(p * (f / a if a else 1.0))
    before = _train(reference, applied)
    after = _train(ours, folded)
    assert torch.allclose(before, after, rtol=tol, atol=tol * float(before.abs().max()))


def test_sgd_fold_scales_lr_by_c_squared_and_independent_decay_keeps_its_shrink():
    c = (32 / 8) ** 0.5  # muP's attn.scale d_head0^1/2 / d_head over 1/sqrt(d_head), d_head = 8, d_head0 = 32
    applied, folded = _pair("mup_sgd", {})
    a, f = applied.entry("blocks.0.attn.q.weight"), folded.entry("blocks.0.attn.q.weight")
    assert (f.init_std, f.lr, f.weight_decay) == pytest.approx((a.init_std * c, a.lr * c**2, a.weight_decay / c**2))
    applied, folded = _pair("mup_indep_wd", {})
    a, f = applied.entry("blocks.0.attn.q.weight"), folded.entry("blocks.0.attn.q.weight")
    assert f.lr == pytest.approx(a.lr * c)
    assert f.lr * f.weight_decay == pytest.approx(a.lr * a.weight_decay)  # the per-step shrink lambda_ind
