"""Plans agree per parameter with the reference `mup` package (set_base_shapes + MuAdamW, coupled wd),
and Complete(d)P plans on the bundled GPT follow the exponent tables of design.md.

Differences by design, pinned explicitly below: neither `mup` nor rules/mup.scale scales Adam's eps (CompleteP
does); rules/mup.scale sets the attention logit scale to d_head0^(1/2) / d_head, the 1/d law of muP with the
constant chosen to equal SP's 1/sqrt(d_head) at the base head dimension (mup leaves it to the model code).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import scalec
from scalec.runtime.plan.planner import make_plan
from scalec.runtime.trainer.gpt import GPT, GPTConfig

mup = pytest.importorskip("mup")

MULTS = (1, 2, 4)
ETA, LAMBDA, SIGMA = 0.01, 0.1, 0.02
HP = {"eta": ETA, "lambda": LAMBDA, "sigma": SIGMA}


@pytest.fixture(scope="module")
def rules():
    return scalec.load("mup")


@pytest.fixture(scope="module")
def small():
    """mup.scale with base width 32, so the transformer comparisons run at widths 32, 64, 128."""
    return scalec.load("mup", base={"n": 32})


def _n0(rules) -> int:
    return int(rules.module.BASE.n)


def _mup_settings(model: nn.Module) -> dict[str, tuple[float, float]]:
    """Per parameter name, (lr, weight_decay) that mup.MuAdamW assigns (model has base shapes set)."""
    opt = mup.MuAdamW(model.parameters(), lr=ETA, weight_decay=LAMBDA)
    names = {id(p): n for n, p in model.named_parameters()}
    return {names[id(p)]: (g["lr"], g["weight_decay"]) for g in opt.param_groups for p in g["params"]}


def _assert_same_optim(plan, settings: dict[str, tuple[float, float]]) -> None:
    assert {e.name for e in plan.entries} == set(settings)
    for e in plan.entries:
        lr, wd = settings[e.name]
        assert e.lr == pytest.approx(lr, rel=1e-12), e.name
        assert e.weight_decay == pytest.approx(wd, rel=1e-12), e.name


def _mup_normal_std(p: torch.Tensor) -> float:
    """The std `mup.init.normal_(p, std=SIGMA)` draws with, measured on a large proxy with p's infshape."""
    proxy = torch.empty(1024, 1024)
    proxy.infshape = p.infshape
    mup.init.normal_(proxy, std=SIGMA)
    return proxy.std().item()


def _mup_ratios(build, n0: int, mult: int) -> dict[str, float]:
    """Per 2-D parameter: mup's init std at n0*mult over that at n0 (mup.init.normal_, base shapes set)."""
    wide, base = build(n0 * mult, n0), build(n0, n0)
    base_p = dict(base.named_parameters())
    return {n: _mup_normal_std(p) / _mup_normal_std(base_p[n]) for n, p in wide.named_parameters() if p.ndim == 2}


# --- a small MLP --------------------------------------------------------------------------------------------


class MLP(nn.Module):
    """in -> n -> n -> out; the readout applies the plan's output multiplier (or is a MuReadout)."""

    def __init__(self, width: int, mu_readout: bool = False, output_mult: float = 1.0) -> None:
        super().__init__()
        self.input = nn.Linear(8, width)
        self.hidden = nn.Linear(width, width)
        self.readout = mup.MuReadout(width, 4) if mu_readout else nn.Linear(width, 4)
        self.output_mult = output_mult

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.hidden(torch.relu(self.input(x))))
        return self.readout(h * self.output_mult)


APPLIED = {"output.mult"}  # the MLP (and mup's MuReadout) multiplies the readout's input by it
MLP_PATTERNS = {
    "input.weight": "embed",
    "hidden.weight": "mlp.up",
    "readout.weight": "unembed",
    "*.bias": "bias",
}


def _mup_mlp(width: int, n0: int) -> MLP:
    torch.manual_seed(0)
    model = MLP(width, mu_readout=True)
    return mup.set_base_shapes(model, MLP(n0, mu_readout=True))


@pytest.mark.parametrize("mult", MULTS)
def test_mlp_plan_matches_mup_lr_weight_decay_and_output_multiplier(rules, mult):
    n0 = _n0(rules)
    ref = _mup_mlp(n0 * mult, n0)
    plan = make_plan(rules, MLP(n0 * mult), {"n": n0 * mult}, hp=HP, patterns=MLP_PATTERNS, applied_sites=APPLIED)
    _assert_same_optim(plan, _mup_settings(ref))
    assert plan.multipliers["output.mult"] == pytest.approx(1 / ref.readout.width_mult(), rel=1e-12)
    inferred = make_plan(
        rules,
        MLP(n0 * mult),
        {"n": n0 * mult},
        hp=HP,
        preset="infer",
        base_model=MLP(n0 // 2),
        applied_sites=APPLIED,
        example_input=torch.randn(2, 8),  # the trace shows no attention, so muP's d_head rule reaches no tensor
    )
    assert [(e.lr, e.weight_decay) for e in inferred.entries] == [(e.lr, e.weight_decay) for e in plan.entries]


def _mup_mlp_std(width: int, n0: int, name: str) -> float:
    """Std of an MLP weight after mup.set_base_shapes: torch's default Linear init, std 1/sqrt(3 fan_in),
    times the exact factor set_base_shapes rescales it by (MuReadout: sqrt(width_mult))."""
    torch.manual_seed(0)
    model = MLP(width, mu_readout=True)
    before = dict(model.named_parameters())[name].detach().clone()
    mup.set_base_shapes(model, MLP(n0, mu_readout=True))
    after = dict(model.named_parameters())[name].detach()
    factor = (after / before).mean().item()
    assert torch.allclose(after, before * factor)
    return factor / math.sqrt(3 * before.shape[1])


@pytest.mark.slow
def test_mlp_init_scales_like_mup(rules):
    n0 = _n0(rules)
    base_plan = make_plan(rules, MLP(n0), {"n": n0}, hp=HP, patterns=MLP_PATTERNS, applied_sites=APPLIED)
    for mult in (2, 4):
        plan = make_plan(rules, MLP(n0 * mult), {"n": n0 * mult}, hp=HP, patterns=MLP_PATTERNS, applied_sites=APPLIED)
        for name in ("input.weight", "hidden.weight", "readout.weight"):
            expected = _mup_mlp_std(n0 * mult, n0, name) / _mup_mlp_std(n0, n0, name)
            got = plan.entry(name).init_std / base_plan.entry(name).init_std
            assert got == pytest.approx(expected, rel=1e-6), name
        assert all(e.init_std == 0 for e in plan.entries if e.role == "bias")  # zero-init: width-free too


@pytest.mark.slow
def test_one_training_step_equals_mup_on_the_mlp(rules):
    n0 = _n0(rules)
    width = 2 * n0
    ref = _mup_mlp(width, n0)
    plan = make_plan(rules, MLP(width), {"n": width}, hp=HP, patterns=MLP_PATTERNS, applied_sites=APPLIED)
    ours = MLP(width, output_mult=plan.multipliers["output.mult"])
    ours.load_state_dict(ref.state_dict())
    x, y = torch.randn(16, 8, generator=torch.Generator().manual_seed(1)), torch.randn(16, 4)
    opt_ref = mup.MuAdamW(ref.parameters(), lr=ETA, weight_decay=LAMBDA, betas=(0.9, 0.95), eps=1e-8)
    opt_ours = torch.optim.AdamW(plan.param_groups(ours))
    assert torch.allclose(ours(x), ref(x), atol=1e-6)
    for model, opt in ((ref, opt_ref), (ours, opt_ours)):
        for _ in range(2):
            nn.functional.mse_loss(model(x), y).backward()
            opt.step()
            opt.zero_grad()
    for (name, a), b in zip(ref.named_parameters(), ours.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6), name


# --- the bundled GPT ----------------------------------------------------------------------------------------


def _cfg(width: int, depth: int = 2) -> GPTConfig:
    return GPTConfig(width=width, depth=depth, head_dim=32, seq_len=16, vocab=64)


def _mup_gpt(width: int, n0: int) -> GPT:
    """The bundled GPT with its readout swapped for a MuReadout (mup's 1/width_mult logit multiplier)."""

    def twin(w: int) -> GPT:
        torch.manual_seed(0)
        model = GPT(_cfg(w))
        model.unembed = mup.MuReadout(w, 64, bias=False)
        return model

    return mup.set_base_shapes(twin(width), twin(n0))


@pytest.mark.slow
@pytest.mark.parametrize("mult", MULTS)
def test_gpt_plan_matches_mup(small, mult):
    rules, n0 = small, _n0(small)
    ref = _mup_gpt(n0 * mult, n0)
    plan = make_plan(rules, GPT(_cfg(n0 * mult)), {"n": n0 * mult, "d_head": 32}, hp=HP)
    _assert_same_optim(plan, _mup_settings(ref))
    assert plan.multipliers["output.mult"] == pytest.approx(1 / ref.unembed.width_mult(), rel=1e-12)
    assert plan.multipliers["attn.scale"] == pytest.approx(1 / math.sqrt(32), rel=1e-12)  # head_dim fixed


@pytest.mark.slow
def test_gpt_init_scales_like_mup_init_normal(small):
    rules, n0 = small, _n0(small)
    base = make_plan(rules, GPT(_cfg(n0)), {"n": n0, "d_head": 32}, hp=HP)
    plan = make_plan(rules, GPT(_cfg(4 * n0)), {"n": 4 * n0, "d_head": 32}, hp=HP)
    expected = _mup_ratios(_mup_gpt, n0, 4)
    assert len(expected) == sum(len(e.shape) == 2 for e in plan.entries)
    for name, ratio in expected.items():
        assert plan.entry(name).init_std / base.entry(name).init_std == pytest.approx(ratio, rel=0.01), name


@pytest.mark.slow
def test_one_training_step_equals_mup_on_the_gpt(small):
    rules, n0 = small, _n0(small)
    ref = _mup_gpt(2 * n0, n0)
    plan = make_plan(rules, GPT(_cfg(2 * n0)), {"n": 2 * n0, "d_head": 32}, hp=HP)
    ours = GPT(_cfg(2 * n0), plan.multipliers)
    ours.load_state_dict(ref.state_dict())
    tokens = torch.randint(0, 64, (2, 17), generator=torch.Generator().manual_seed(2))
    opt_ref = mup.MuAdamW(ref.parameters(), lr=ETA, weight_decay=LAMBDA, betas=(0.9, 0.95), eps=1e-8)
    opt_ours = torch.optim.AdamW(plan.param_groups(ours))
    for model, opt in ((ref, opt_ref), (ours, opt_ours)):
        model(tokens[:, :-1], tokens[:, 1:]).backward()
        opt.step()
    for (name, a), b in zip(ref.named_parameters(), ours.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6), name


# --- differences by design ----------------------------------------------------------------------------------


def test_neither_mup_nor_mup_scale_scales_eps_but_completep_does(rules):
    n0 = _n0(rules)
    for mult in MULTS:
        with torch.device("meta"):
            model = GPT(_cfg(n0 * mult))
        plan = make_plan(rules, model, {"n": n0 * mult}, hp={**HP, "eps": 1e-8})
        assert {e.eps for e in plan.entries} == {1e-8}  # mup's MuAdamW passes eps through unchanged too
        cp = make_plan(scalec.load("completep"), model, {"n": n0 * mult}, hp={**HP, "eps": 1e-8})
        assert cp.entry("blocks.0.mlp.up.weight").eps == pytest.approx(1e-8 / mult, rel=1e-12)


def test_mup_scale_attention_follows_one_over_d_head(rules):
    d0 = float(rules.module.BASE.d_head)
    for k in (1, 2, 4):
        sites = rules.sites(rules.shape(d_head=d0 * k))
        assert sites.attn_scale == pytest.approx(d0**-0.5 / k, rel=1e-12)  # mup: 1/d; equal to SP at d0


# --- HF GPT-2 -----------------------------------------------------------------------------------------------


def _hf_gpt2(width: int):
    try:
        from transformers import GPT2Config, GPT2LMHeadModel
    except (ImportError, RuntimeError):
        pytest.skip("transformers (the `hf` extra) is not importable")
    torch.manual_seed(0)
    return GPT2LMHeadModel(
        GPT2Config(
            n_embd=width,
            n_layer=1,
            n_head=width // 32,
            vocab_size=64,
            n_positions=16,
            bos_token_id=0,
            eos_token_id=0,
        )
    )


def _mup_hf_gpt2(width: int, n0: int):
    def twin(w: int):
        model = _hf_gpt2(w)
        model.lm_head = mup.MuSharedReadout(model.transformer.wte.weight, bias=False)
        return model

    return mup.set_base_shapes(twin(width), twin(n0))


@pytest.mark.slow  # builds an HF model (imports transformers)
@pytest.mark.parametrize("mult", MULTS)
def test_hf_gpt2_plan_matches_mup(small, mult):
    rules, n0 = small, _n0(small)
    ref = _mup_hf_gpt2(n0 * mult, n0)
    shape = {"n": n0 * mult, "L": 1, "d_head": 32}
    plan = make_plan(rules, _hf_gpt2(n0 * mult), shape, hp=HP, applied_sites=APPLIED)  # as MuSharedReadout
    _assert_same_optim(plan, _mup_settings(ref))
    assert plan.multipliers["output.mult"] == pytest.approx(1 / ref.lm_head.width_mult(), rel=1e-12)
    assert plan.entry("transformer.wte.weight").tied_with == ("lm_head.weight",)


@pytest.mark.slow
def test_hf_gpt2_init_scales_like_mup_init_normal(small):
    rules, n0 = small, _n0(small)
    base = make_plan(rules, _hf_gpt2(n0), {"n": n0, "L": 1, "d_head": 32}, hp=HP, applied_sites=APPLIED)
    plan = make_plan(rules, _hf_gpt2(4 * n0), {"n": 4 * n0, "L": 1, "d_head": 32}, hp=HP, applied_sites=APPLIED)
    expected = _mup_ratios(_mup_hf_gpt2, n0, 4)
    assert len(expected) == sum(len(e.shape) == 2 for e in plan.entries)
    for name, ratio in expected.items():
        assert plan.entry(name).init_std / base.entry(name).init_std == pytest.approx(ratio, rel=0.01), name


# --- Complete(d)P / CompleteP exponent tables on the bundled GPT --------------------------------------------

# (role, hp) -> exponents of (m_N, m_L, m_B, m_D); alpha = 1. From design.md, Mlodozeniec et al. Table 1.
BD = (1 / 2, -1 / 2)
COMPLETEDP = {
    ("embed", "lr"): (0, 0, *BD),
    ("final_norm", "lr"): (0, 0, *BD),
    ("hidden", "lr"): (-1, 0, *BD),
    ("norm", "lr"): (0, 0, *BD),
    ("qk_norm", "lr"): (0, 0, *BD),
    ("unembed", "lr"): (-1, 0, *BD),
    ("hidden", "eps"): (-1, -1, -BD[0], -BD[1]),
    ("norm", "eps"): (-1, -1, -BD[0], -BD[1]),
    ("qk_norm", "eps"): (0, -1, -BD[0], -BD[1]),
    ("embed", "eps"): (-1, 0, -BD[0], -BD[1]),
    ("unembed", "eps"): (0, 0, -BD[0], -BD[1]),
    ("final_norm", "eps"): (0, 0, -BD[0], -BD[1]),
    ("hidden", "weight_decay"): (1, 0, *BD),
    ("unembed", "weight_decay"): (1, 0, *BD),
    ("embed", "weight_decay"): (0, 0, *BD),
    ("norm", "weight_decay"): (0, 0, *BD),
    ("hidden", "init_std"): (-1 / 2, 0, 0, 0),
    ("unembed", "init_std"): (-1, 0, 0, 0),
    ("embed", "init_std"): (0, 0, 0, 0),
    ("hidden", "1-beta1"): (0, 0, 1, -1),
    ("norm", "1-beta2"): (0, 0, 1, -1),
    ("unembed", "1-beta1"): (0, 0, 1, -1),
}
HIDDEN = ("attn.q", "attn.k", "attn.v", "attn.o", "mlp.up", "mlp.gate", "mlp.down")


def _value(entry, hp: str) -> float:
    if hp.startswith("1-beta"):
        return 1 - entry.betas[int(hp[-1]) - 1]
    return getattr(entry, hp)


def _plans(rules, k: float = 2.0, **params):
    """Plans of the bundled GPT (meta device, QK-norm on) at the base shape and with each axis times k."""
    base = rules.module.BASE
    out = {}
    for axis in (None, "n", "L", "B", "D"):
        shape = {"n": base.n, "L": base.L, "B": base.B, "D": base.D, "d_head": 32}
        if axis:
            shape[axis] *= k
        with torch.device("meta"):
            model = GPT(GPTConfig(width=int(shape["n"]), depth=int(shape["L"]), head_dim=32, seq_len=16, qk_norm=True))
        out[axis] = make_plan(rules, model, shape)
    return out


def _exponents(plans, name: str, hp: str, k: float = 2.0) -> tuple[float, ...]:
    base = _value(plans[None].entry(name), hp)
    return tuple(round(math.log(_value(plans[a].entry(name), hp) / base, k), 9) for a in ("n", "L", "B", "D"))


@pytest.mark.slow
def test_completedp_plans_follow_the_reference_table_per_parameter():
    plans = _plans(scalec.load("completedp"))
    for entry in plans[None].entries:
        group = "hidden" if entry.role in HIDDEN else entry.role
        for (role, hp), expected in COMPLETEDP.items():
            if role == group:
                assert _exponents(plans, entry.name, hp) == pytest.approx(expected, abs=1e-9), (
                    entry.name,
                    hp,
                )
    res = [(p.multipliers["residual.attn"], p.multipliers["residual.mlp"]) for p in (plans[None], plans["L"])]
    assert res[1][0] / res[0][0] == pytest.approx(0.5) and res[1][1] / res[0][1] == pytest.approx(0.5)
    assert all(e.init_std == 0 for e in plans["n"].entries if e.role in ("norm", "qk_norm", "final_norm"))


@pytest.mark.slow
def test_completedp_depth_exponents_follow_alpha():
    plans = _plans(scalec.load("completedp", params={"alpha": "1/2"}))
    assert _exponents(plans, "blocks.0.mlp.down.weight", "lr")[1] == pytest.approx(-1 / 2)
    assert _exponents(plans, "blocks.0.attn_norm.weight", "eps")[1] == pytest.approx(-1 / 2)
    assert _exponents(plans, "final_norm.weight", "lr")[1] == pytest.approx(0)
    res = plans["L"].multipliers["residual.mlp"] / plans[None].multipliers["residual.mlp"]
    assert res == pytest.approx(2**-0.5)


@pytest.mark.slow
def test_completep_differs_from_completedp_where_the_papers_do():
    plans = _plans(scalec.load("completep"))
    assert _exponents(plans, "unembed.weight", "lr") == pytest.approx((0, 0, 0, 0))
    assert _exponents(plans, "unembed.weight", "init_std") == pytest.approx((0, 0, 0, 0))
    assert _exponents(plans, "embed.weight", "eps") == pytest.approx((0, 0, 0, 0))
    assert _exponents(plans, "blocks.0.mlp.up.weight", "lr") == pytest.approx((-1, 0, 0, 0))
    assert _exponents(plans, "blocks.0.mlp.up.weight", "eps") == pytest.approx((-1, -1, 0, 0))
    out = plans["n"].multipliers["output.mult"] / plans[None].multipliers["output.mult"]
    assert out == pytest.approx(0.5)
