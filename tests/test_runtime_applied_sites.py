"""A plan is applied in full or refused: forward multipliers the model does not apply are folded exactly (residual
branch ends with their biases, the readout, the attention scale, per-role multipliers) or named in one error;
roles inferred from the module graph; tied readouts keep their multiplier as mup's MuSharedReadout does."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import scalec
from scalec.runtime.plan.binding import bind
from scalec.runtime.plan.planner import PlanError, make_plan
from scalec.runtime.trainer.gpt import GPT, GPTConfig

ETA, SIGMA, EPS = 2**-8, 0.02, 1e-8  # sp.scale's defaults: the hand-derived numbers below start from these


class Attention(nn.Module):
    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v = (nn.Linear(d, d) for _ in range(3))
        self.proj = nn.Linear(d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.size()  # nanoGPT style: a torch.fx trace would fail here
        q, k, v = (m(x).view(B, T, self.heads, C // self.heads).transpose(1, 2) for m in (self.q, self.k, self.v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(y.transpose(1, 2).reshape(B, T, C))


class Block(nn.Module):
    def __init__(self, d: int, heads: int, mults: dict[str, float]) -> None:
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = Attention(d, heads)
        self.fc1, self.fc2 = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)  # the MLP branch ends in a bias
        self.mults = mults

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.mults.get("residual.attn", 1.0) * self.attn(self.ln_1(x))
        return x + self.mults.get("residual.mlp", 1.0) * self.fc2(F.gelu(self.fc1(self.ln_2(x))))


# Custom's parameters by role (its biases included).
CUSTOM_PATTERNS = {
    "wte.weight": "embed",
    "*.attn.q.weight": "attn.q",
    "*.attn.k.weight": "attn.k",
    "*.attn.v.weight": "attn.v",
    "*.attn.proj.weight": "attn.o",
    "*.fc1.weight": "mlp.up",
    "*.fc2.weight": "mlp.down",
    "*.ln_?.weight": "norm",
    "ln_f.*": "final_norm",
    "blocks.*.bias": "bias",
    "head.weight": "unembed",
}


class Custom(nn.Module):
    """A user's small transformer; `mults` are the forward multipliers it applies (for the reference runs)."""

    def __init__(self, d: int = 128, depth: int = 8, heads: int = 4, vocab: int = 64, mults=None) -> None:
        super().__init__()
        self.mults = dict(mults or {})
        self.wte = nn.Embedding(vocab, d)
        self.blocks = nn.ModuleList(Block(d, heads, self.mults) for _ in range(depth))
        self.ln_f = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab, bias=False)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.wte(idx)
        for b in self.blocks:
            x = b(x)
        return self.head(self.ln_f(x)) * self.mults.get("output.mult", 1.0)


def _infer(rules, d: int = 128, depth: int = 8, **kw):
    return make_plan(
        rules, Custom(d, depth), {"n": d, "L": depth}, preset="infer", base_model=Custom(d // 2, depth), **kw
    )


# --- roles from the module graph ----------------------------------------------------------------------------


def test_infer_reads_attention_mlp_branch_ends_and_final_norm_off_the_module_graph():
    bound = {b.name: b for b in bind(Custom(64, 2), preset="infer", base_model=Custom(32, 2))}
    expected = {
        "attn.q.weight": "attn.q",
        "attn.k.weight": "attn.k",
        "attn.v.weight": "attn.v",
        "attn.proj.weight": "attn.o",
        "fc1.weight": "mlp.up",
        "fc2.weight": "mlp.down",
        "ln_1.weight": "norm",
        "ln_2.weight": "norm",
        "fc2.bias": "bias",
        "attn.proj.bias": "bias",
    }
    for i in range(2):
        for name, role in expected.items():
            assert bound[f"blocks.{i}.{name}"].role == role, name
            assert bound[f"blocks.{i}.{name}"].source == "graph"
    assert bound["ln_f.weight"].role == bound["ln_f.bias"].role == "final_norm"
    assert (bound["wte.weight"].role, bound["head.weight"].role) == ("embed", "unembed")


@pytest.mark.slow
def test_issue_custom_transformer_gets_completeps_depth_rule_on_its_branch_ends():
    # n = 128 = n0 (m_N = 1), L = 8 = 4 * L0 (m_L = 4), alpha = 1: the branch end absorbs residual.mlp = 1/4.
    plan = _infer(scalec.load("completep", fold=True))
    fc2, proj, fc1 = (plan.entry(f"blocks.3.{n}.weight") for n in ("fc2", "attn.proj", "fc1"))
    assert fc2.init_std == pytest.approx(0.005) and fc2.lr == pytest.approx(0.0009765625)  # 0.02/4, 2^-8/4
    assert proj.init_std == pytest.approx(0.005) and proj.lr == pytest.approx(0.0009765625)
    assert fc1.init_std == pytest.approx(0.02) and fc1.lr == pytest.approx(ETA)  # inside the branch: unfolded
    assert fc2.eps == pytest.approx(EPS)  # block eps m_L^-1 = 1/4, divided by the folded 1/4
    bias = plan.entry("blocks.3.fc2.bias")  # the branch's bias is folded with its matrix
    assert bias.lr == pytest.approx(ETA / 4) and bias.eps == pytest.approx(EPS)
    assert plan.entry("blocks.3.fc1.bias").lr == pytest.approx(ETA)
    assert plan.multipliers["residual.mlp"] == plan.multipliers["residual.attn"] == 1.0


def test_ambiguous_graph_refuses_to_fold_a_depth_rule():
    class FloatIn(Custom):  # takes embeddings, not tokens: the default token batch cannot trace it
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            for b in self.blocks:
                x = b(x)
            return self.head(self.ln_f(x))

    with pytest.raises(PlanError, match="residual.attn = 0.25 .cannot be folded: the module graph did not decide"):
        make_plan(
            scalec.load("completep", fold=True),
            FloatIn(64, 8),
            {"n": 64, "L": 8, "d_head": 16},  # untraceable, so the head dimension is the caller's to give
            preset="infer",
            base_model=FloatIn(32, 8),
        )
    plan = make_plan(
        scalec.load("completep", fold=True),
        FloatIn(64, 8),
        {"n": 64, "L": 8},
        preset="infer",
        base_model=FloatIn(32, 8),
        example_input=torch.zeros(1, 4, 64),
    )
    assert plan.entry("blocks.0.fc2.weight").role == "mlp.down"


# --- folding is exact: a folded run equals the run that applies the multipliers --------------------------------


def _run(model: nn.Module, groups, steps: int = 3) -> torch.Tensor:
    opt = torch.optim.AdamW(groups)
    x = torch.randint(0, 64, (2, 12), generator=torch.Generator().manual_seed(1))
    for _ in range(steps):
        loss = F.cross_entropy(model(x).flatten(0, 1), x.flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model(x)


@pytest.mark.slow
def test_folded_plan_trains_exactly_like_the_applied_multipliers_branch_biases_included():
    rules = scalec.load("completep", params={"alpha": "1/2"}, fold=True)
    shape = {"n": 64, "L": 8}
    sites = {"residual.attn", "residual.mlp", "output.mult", "attn.scale"}
    applied = make_plan(rules, Custom(64, 8), shape, patterns=CUSTOM_PATTERNS, applied_sites=sites, fold=False)
    folded = make_plan(rules, Custom(64, 8), shape, patterns=CUSTOM_PATTERNS, applied_sites={"attn.scale"})
    mults = {k: applied.multipliers[k] for k in ("residual.attn", "residual.mlp", "output.mult")}
    assert mults["residual.mlp"] == pytest.approx(0.5)  # m_L^-1/2 at m_L = 4
    reference, ours = Custom(64, 8, mults=mults), Custom(64, 8)
    torch.manual_seed(0)
    applied.init_(reference)
    with torch.no_grad():  # the folded tensors are the applied ones times their multiplier
        for (name, p), q in zip(reference.named_parameters(), ours.parameters(), strict=True):
            ratio = folded.entry(name).lr / applied.entry(name).lr
            q.copy_(p * ratio)
    assert folded.entry("blocks.0.fc2.bias").lr == pytest.approx(applied.entry("blocks.0.fc2.bias").lr * 0.5)
    a = _run(reference, applied.param_groups(reference)) * 1.0
    b = _run(ours, folded.param_groups(ours))
    assert torch.allclose(a, b, atol=1e-5, rtol=1e-4)


# --- refusals -------------------------------------------------------------------------------------------------


def test_unapplied_multipliers_are_refused_in_one_line_naming_site_value_and_fix():
    with pytest.raises(PlanError) as info:
        _infer(scalec.load("completep"))
    msg = str(info.value)
    assert "\n" not in msg
    assert "residual.attn = 0.25" in msg and "residual.mlp = 0.25" in msg and "output.mult" not in msg  # n = n0
    assert "fold=True" in msg and "applied_sites={'residual.attn', 'residual.mlp'}" in msg


def test_bundled_gpt_applies_everything_but_not_when_told_otherwise():
    cfg = GPTConfig(width=64, depth=4, head_dim=16, seq_len=16, vocab=64, qk_norm=True)
    rules = scalec.load("mup")
    assert make_plan(rules, GPT(cfg), {"n": 64, "L": 4, "d_head": 16}).multipliers["output.mult"] == 2.0  # n0/n
    with pytest.raises(PlanError, match=r"attn.scale = 0.353553 .cannot be folded: QK-norm"):
        make_plan(rules, GPT(cfg), {"n": 64, "L": 4, "d_head": 16}, applied_sites={"output.mult"}, fold=True)
    with pytest.raises(PlanError, match="applied_sites names unknown site 'residual'"):
        make_plan(rules, GPT(cfg), {"n": 64, "L": 4, "d_head": 16}, applied_sites={"residual"})


def test_per_role_multiplier_is_folded_into_its_own_tensor_or_refused():
    rules = scalec.load("sp", fold=True)
    plan = _infer(rules, depth=2, hp={"mult[mlp.up]": 2.0})
    fc1 = plan.entry("blocks.0.fc1.weight")
    assert (fc1.init_std, fc1.lr, fc1.eps, fc1.mult) == pytest.approx((0.04, 2 * ETA, EPS / 2, 1.0))
    assert plan.entry("blocks.0.fc1.bias").lr == ETA  # a tensor multiplier scales the tensor, not its bias
    with pytest.raises(PlanError, match=r"mult\[mlp.up\] = 2 that Custom does not apply"):
        _infer(scalec.load("sp"), depth=2, hp={"mult[mlp.up]": 2.0})


# --- final norm and QK-norm rules -----------------------------------------------------------------------------


def test_final_norm_bias_is_grouped_like_nanogpt_mup_completep():
    # nanoGPT-mup, branch completep, configure_optimizers: '.ln_f.' params get lr_scale 1; hidden '.ln_' params
    # and c_* biases get depth_lr_scaling = m_L^(alpha-1); hidden weights (1/m_N) * m_L^(alpha-1).
    rules = scalec.load("completep", params={"alpha": "1/2"})
    plan = _infer(rules, d=128, depth=8, applied_sites="all")
    depth = 4 ** (1 / 2 - 1)
    assert plan.entry("ln_f.bias").lr == pytest.approx(ETA) and plan.entry("ln_f.weight").lr == pytest.approx(ETA)
    assert plan.entry("blocks.0.ln_1.weight").lr == pytest.approx(ETA * depth)
    assert plan.entry("blocks.0.fc2.bias").lr == pytest.approx(ETA * depth)
    assert plan.entry("ln_f.bias").init_mean == 0.0 and plan.entry("ln_f.weight").init_mean == 1.0
    assert plan.entry("ln_f.bias").eps == pytest.approx(EPS)  # no m_N^-1 m_L^-alpha: outside the blocks


@pytest.mark.slow
def test_qk_norm_follows_the_block_rule_in_completep_and_completedp_alike():
    # design.md, Complete(d)P Table 1: QK-norm gains lr m_L^(alpha-1), eps m_L^-alpha; at alpha = 1/2, m_L = 4
    # both are 1/2 (no batch factors at the base B, D).
    cfg = GPTConfig(width=128, depth=8, head_dim=32, seq_len=16, vocab=64, qk_norm=True)
    for name in ("completep", "completedp"):
        rules = scalec.load(name, params={"alpha": "1/2"})
        e = make_plan(rules, GPT(cfg), {"n": 128, "L": 8}).entry("blocks.0.attn.q_norm.weight")
        assert (e.lr, e.eps) == pytest.approx((ETA / 2, EPS / 2)), name


# --- the shape must describe the model ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape, message",
    [
        ({"n": 1024, "L": 8}, "the shape says n=1024 but the model has n=128"),
        ({"n": 128, "L": 32}, "the shape says L=32 but the model has L=8"),
    ],
)
def test_shape_that_does_not_describe_the_model_is_refused(shape, message):
    with pytest.raises(PlanError, match=message) as info:
        make_plan(scalec.load("completep"), Custom(128, 8), shape, preset="infer", base_model=Custom(64, 8))
    assert "\n" not in str(info.value)


@pytest.mark.slow
def test_tied_readout_keeps_musharedreadouts_multiplier_for_every_rule():
    mup = pytest.importorskip("mup")

    class TiedLM(nn.Module):
        def __init__(self, d: int) -> None:
            super().__init__()
            self.wte = nn.Embedding(64, d)
            self.fc1, self.fc2 = nn.Linear(d, 2 * d), nn.Linear(2 * d, d)
            self.head = mup.MuSharedReadout(self.wte.weight, bias=False)

        def forward(self, idx: torch.Tensor) -> torch.Tensor:
            x = self.wte(idx)
            return self.head(x + self.fc2(F.relu(self.fc1(x))))

    ref = mup.set_base_shapes(TiedLM(512), TiedLM(128))
    patterns = {"wte.weight": "embed", "*fc1.weight": "mlp.up", "*fc2.weight": "mlp.down", "*.bias": "bias"}
    for name in ("mup", "mup_table3", "completep", "completedp"):
        rules = scalec.load(name, fold=True)
        plan = make_plan(rules, TiedLM(512), {"n": 512, "L": 1}, patterns=patterns, applied_sites={"output.mult"})
        assert plan.multipliers["output.mult"] == pytest.approx(1 / ref.head.width_mult()), name  # 1/4
        wte = plan.entry("wte.weight")
        assert wte.tied_with == ("head.weight",) and wte.role == "embed"
        assert (wte.init_std, wte.lr) == pytest.approx((SIGMA, ETA)), name  # trained as the embedding
        with pytest.raises(PlanError, match="output.mult = 0.25 .cannot be folded: the readout shares its tensor"):
            make_plan(rules, TiedLM(512), {"n": 512, "L": 1}, patterns=patterns)
    assert math.isclose(1 / ref.head.width_mult(), 0.25)
