"""make_plan on randomly built models (issue 23, item 11): every parameter is bound with the values muP's table
gives (computed here by hand from the exponents, design.md), or the plan is refused in one line; never a plan that
leaves a multiplier unapplied.

The models vary width, depth, biases, fused or separate qkv, grouped-query heads, head dimension, final norm or
none, and an untied readout or one tied as a shared parameter or in `forward` (`x @ emb.weight.t()`, which
make_plan finds in the traced graph).  The head dimension is passed in the shape.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import scalec
from scalec.runtime.plan.planner import PlanError, make_plan

ETA, SIGMA, LAMBDA, EPS = 2.0**-8, 0.02, 0.1, 1e-8  # muP's defaults (rules/sp.scale)
N0, D_HEAD0 = 128, 32  # muP's base width and head dimension


class Attention(nn.Module):
    def __init__(self, n: int, heads: int, kv_heads: int, d: int, bias: bool, fused: bool) -> None:
        super().__init__()
        self.heads, self.kv_heads, self.d, self.fused = heads, kv_heads, d, fused
        if fused:
            self.qkv = nn.Linear(n, (heads + 2 * kv_heads) * d, bias=bias)
        else:
            self.q = nn.Linear(n, heads * d, bias=bias)
            self.k, self.v = nn.Linear(n, kv_heads * d, bias=bias), nn.Linear(n, kv_heads * d, bias=bias)
        self.o = nn.Linear(heads * d, n, bias=bias)

    def forward(self, x: torch.Tensor, scale: float | None) -> torch.Tensor:
        B, T, _ = x.shape
        if self.fused:
            q, k, v = self.qkv(x).split([self.heads * self.d, self.kv_heads * self.d, self.kv_heads * self.d], -1)
        else:
            q, k, v = self.q(x), self.k(x), self.v(x)
        q = q.view(B, T, self.heads, self.d).transpose(1, 2)
        k, v = (t.view(B, T, self.kv_heads, self.d).transpose(1, 2) for t in (k, v))
        rep = self.heads // self.kv_heads
        k, v = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale)
        return self.o(y.transpose(1, 2).reshape(B, T, -1))


class Block(nn.Module):
    def __init__(self, n: int, heads: int, kv_heads: int, d: int, bias: bool, fused: bool) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(n, bias=bias), nn.LayerNorm(n, bias=bias)
        self.attn = Attention(n, heads, kv_heads, d, bias, fused)
        self.up, self.down = nn.Linear(n, 4 * n, bias=bias), nn.Linear(4 * n, n, bias=bias)

    def forward(self, x: torch.Tensor, sites: dict[str, float]) -> torch.Tensor:
        x = x + sites.get("residual.attn", 1.0) * self.attn(self.ln1(x), sites.get("attn.scale"))
        return x + sites.get("residual.mlp", 1.0) * self.down(F.gelu(self.up(self.ln2(x))))


class RandomLM(nn.Module):
    """A small decoder; `sites` are the forward multipliers it applies (empty: none)."""

    def __init__(self, spec: dict, sites: dict[str, float] | None = None) -> None:
        super().__init__()
        n, vocab = spec["n"], 64
        self.spec, self.sites = spec, dict(sites or {})
        self.emb = nn.Embedding(vocab, n)
        self.blocks = nn.ModuleList(
            Block(n, n // spec["d"], spec["kv"], spec["d"], spec["bias"], spec["fused"]) for _ in range(spec["L"])
        )
        self.norm_f = nn.LayerNorm(n, bias=spec["bias"]) if spec["final_norm"] else nn.Identity()
        if spec["tie"] != "forward":
            self.head = nn.Linear(n, vocab, bias=False)
            if spec["tie"] == "shared":
                self.head.weight = self.emb.weight

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.emb(idx)
        for block in self.blocks:
            x = block(x, self.sites)
        x = self.norm_f(x)
        logits = x @ self.emb.weight.t() if self.spec["tie"] == "forward" else self.head(x)
        return self.sites.get("output.mult", 1.0) * logits


PATTERNS = {
    "emb.weight": "embed",
    "blocks.*.attn.q.weight": "attn.q",
    "blocks.*.attn.qkv.weight": "attn.q",
    "blocks.*.attn.k.weight": "attn.k",
    "blocks.*.attn.v.weight": "attn.v",
    "blocks.*.attn.o.weight": "attn.o",
    "blocks.*.up.weight": "mlp.up",
    "blocks.*.down.weight": "mlp.down",
    "blocks.*.ln?.*": "norm",
    "norm_f.*": "final_norm",
    "blocks.*.attn.*.bias": "bias",
    "blocks.*.up.bias": "bias",
    "blocks.*.down.bias": "bias",
    "head.weight": "unembed",
}


@st.composite
def specs(draw) -> dict:
    d = draw(st.sampled_from([8, 16, 32, 64]))
    n = draw(st.sampled_from([w for w in (32, 64, 128, 256) if w % d == 0 and w >= d]))
    heads = n // d
    kv = draw(st.sampled_from([k for k in range(1, heads + 1) if heads % k == 0]))
    applied = draw(st.booleans())  # the model applies every site, or none (make_plan folds them)
    ties = ["none", "shared", "forward"]
    return dict(
        n=n,
        L=draw(st.integers(1, 3)),
        d=d,
        kv=kv,
        bias=draw(st.booleans()),
        fused=draw(st.booleans()),
        final_norm=draw(st.booleans()),
        tie=draw(st.sampled_from(ties)),
        applied=applied,
    )


def _expected(spec: dict) -> tuple[dict[str, float], dict[str, tuple[float, float, float, float, float]]]:
    """By hand from muP's table (design.md, Table 8 form): sites, and per role (init_mean, init_std, lr, wd, eps)
    before any folding. Hidden: init var 1/fan_in -> std sigma m_N^-1/2, lr eta/m_N, wd lambda m_N."""
    m = spec["n"] / N0
    sites = {"residual.attn": 1.0, "residual.mlp": 1.0, "output.mult": 1 / m, "embed.mult": 1.0}
    sites["attn.scale"] = math.sqrt(D_HEAD0) / spec["d"]
    hidden = (0.0, SIGMA * m**-0.5, ETA / m, LAMBDA * m, EPS)
    roles = dict.fromkeys(("attn.q", "attn.k", "attn.v", "attn.o", "mlp.up", "mlp.down"), hidden)
    roles |= {"embed": (0.0, SIGMA, ETA, LAMBDA, EPS), "unembed": (0.0, SIGMA, ETA, LAMBDA, EPS)}
    roles |= {"bias": (0.0, 0.0, ETA, LAMBDA, EPS)}
    roles |= dict.fromkeys(("norm", "final_norm"), (1.0, 0.0, ETA, LAMBDA, EPS))
    return sites, roles


@pytest.mark.slow
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=specs())
def test_make_plan_binds_every_parameter_as_mup_says_or_refuses_in_one_line(spec):
    rules = scalec.load("mup", fold=True)
    sites, roles = _expected(spec)
    model = RandomLM(spec, sites if spec["applied"] else None)
    shape = {"n": spec["n"], "L": spec["L"], "d_head": spec["d"]}
    applied = "all" if spec["applied"] else ()
    try:
        plan = make_plan(rules, model, shape, patterns=PATTERNS, applied_sites=applied)
    except PlanError as exc:
        assert "\n" not in str(exc) and str(exc).startswith("error: ")
        # refused only where folding cannot be exact: the readout shares the embedding's tensor, or the queries
        # sit in a fused qkv tensor (the scale would hit keys and values too)
        assert not spec["applied"], str(exc)
        tied = spec["tie"] in ("shared", "forward")  # a readout tied as a shared tensor or in forward
        assert (tied and spec["n"] != N0) or (spec["fused"] and spec["d"] != D_HEAD0), str(exc)
        return
    # what must be folded when the model applies nothing: output.mult into the readout, attn.scale into q
    c_out = sites["output.mult"] if not spec["applied"] else 1.0
    c_q = sites["attn.scale"] * math.sqrt(spec["d"]) if not spec["applied"] else 1.0
    assert not spec["applied"] or plan.multipliers["output.mult"] == pytest.approx(sites["output.mult"])
    assert not spec["applied"] or plan.multipliers["attn.scale"] == pytest.approx(sites["attn.scale"])
    if not spec["applied"]:  # the model applies nothing: every multiplier left in the plan is its identity
        identity = {"attn.scale": spec["d"] ** -0.5}
        for site, value in plan.multipliers.items():
            assert value == pytest.approx(identity.get(site, 1.0)), (site, value, spec)
    names = {name for name, _ in model.named_parameters()}
    assert {e.name for e in plan.entries} == names  # every parameter, once (a shared tensor under one name)
    for e in plan.entries:
        role = "embed" if e.name == "emb.weight" else e.role
        mean, std, lr, wd, eps = roles[role]
        if e.name.endswith(".bias") and role in ("norm", "final_norm"):
            mean = 0.0  # a norm's shift starts at 0
        c = 1.0
        if role == "unembed":
            c = c_out
        elif role == "attn.q" or (e.name.endswith("attn.q.bias") or e.name.endswith("attn.qkv.bias")):
            c = c_q
        got = (e.init_mean, e.init_std, e.lr, e.weight_decay, e.eps)
        assert got == pytest.approx((mean, std * c, lr * c, wd / c, eps / c), rel=1e-9), (e.name, spec)
