"""Bundled rules against their sources (issue 23, item 7): `mup`'s MuSGD, unit_scaling's u-muP Adam LR rules, and
the nanoGPT-mup completep commit the CompleteP file names."""

from __future__ import annotations

import pytest
import torch

import scalec
from scalec.runtime.plan.planner import make_plan
from scalec.runtime.trainer.gpt import GPT, GPTConfig

mup = pytest.importorskip("mup")

N0 = 64  # base width; the base head dimension is 32, as mup_sgd's d_head0
ETA, LAMBDA = 0.05, 0.01


def _cfg(width: int, heads_grow: bool) -> GPTConfig:
    """Wider by more heads of 32 (the QK-norm gains keep their size), or by wider heads (two heads)."""
    heads = {"head_dim": 32} if heads_grow else {"n_heads": 2}
    return GPTConfig(width=width, depth=2, seq_len=16, vocab=64, qk_norm=True, **heads)


def _musgd_settings(width: int, heads_grow: bool) -> dict[str, tuple[float, float]]:
    """Per parameter, (lr, weight_decay) of mup.MuSGD on the bundled GPT with a MuReadout, base width N0."""

    def twin(w: int) -> GPT:
        torch.manual_seed(0)
        model = GPT(_cfg(w, heads_grow))
        model.unembed = mup.MuReadout(w, 64, bias=False)
        return model

    model = mup.set_base_shapes(twin(width), twin(N0))
    opt = mup.MuSGD(model.parameters(), lr=ETA, weight_decay=LAMBDA, momentum=0.9)
    names = {id(p): n for n, p in model.named_parameters()}
    return {names[id(p)]: (g["lr"], g["weight_decay"]) for g in opt.param_groups for p in g["params"]}


@pytest.mark.slow
@pytest.mark.parametrize("heads_grow", [True, False])
def test_mup_sgd_matches_musgd_per_parameter_qk_norm_gains_by_the_head_dimension(heads_grow):
    rules = scalec.load("mup_sgd", base={"n": N0})
    mult = 4
    width = N0 * mult
    cfg = _cfg(width, heads_grow)
    hp = {"eta": ETA, "sgd_ratio": 1, "lambda": LAMBDA}
    plan = make_plan(rules, GPT(cfg), {"n": width, "L": 2, "d_head": cfg.head_dim}, hp=hp)
    ref = _musgd_settings(width, heads_grow)
    assert {e.name for e in plan.entries} == set(ref)
    qk = [e for e in plan.entries if e.role == "qk_norm"]
    assert qk, "the model has QK-norm gains"
    for e in plan.entries:
        lr, wd = ref[e.name]
        if e.role == "unembed":
            # Table 3 form vs MuReadout's logit multiplier c = 1/mult: SGD's abc-symmetry moves lr by c^2.
            assert e.lr == pytest.approx(lr / mult**2, rel=1e-12), e.name
            continue
        assert e.lr == pytest.approx(lr, rel=1e-12), e.name
        assert e.weight_decay == pytest.approx(wd, rel=1e-12), e.name
    # by hand: the gains have d_head entries, so MuSGD's width_mult is the head-dimension ratio (1 or mult)
    h = cfg.head_dim / 32
    assert all(e.lr == pytest.approx(ETA * h) and e.weight_decay == pytest.approx(LAMBDA / h) for e in qk)


def test_mup_sgd_qk_norm_lr_follows_the_head_dimension_not_the_width():
    m = scalec.load("mup_sgd").module
    hp = m.HParams(eta=2**-8, sgd_ratio=64.0)
    base = m.role_hparams("qk_norm", m.BASE, hp)
    wide = m.role_hparams("qk_norm", m.Shape(n=4096, L=2, B=2**12, D=2**22, d_head=32), hp)
    assert wide.lr == pytest.approx(base.lr) and wide.weight_decay == pytest.approx(base.weight_decay)
    deep_heads = m.role_hparams("qk_norm", m.Shape(n=128, L=2, B=2**12, D=2**22, d_head=128), hp)
    assert deep_heads.lr == pytest.approx(4 * base.lr)


def test_umup_lrs_follow_unit_scalings_lr_scale_func_adam():
    """graphcore-research/unit-scaling, unit_scaling/optim.py: lr_scale_func_adam gives weights fan_in^-1/2 (an
    embedding's fan_in is its output dim), norms and biases 1, the output 1, each times depth^-1/2 inside the
    residual branches (here relative to the base depth L0 = 2, as the rest of the file)."""
    m = scalec.load("umup").module
    eta, n, big_l = 0.05, 4096, 32
    shape = m.Shape(n=n, L=big_l, B=2**12, D=2**22, d_head=32)
    hp = m.HParams(eta=eta)
    depth = (big_l / 2) ** -0.5  # 0.25
    assert m.role_hparams("embed", shape, hp).lr == pytest.approx(eta / n**0.5)  # 7.8e-4, not 0.05
    assert m.role_hparams("qk_norm", shape, hp).lr == pytest.approx(eta * depth)  # 0.0125, not 0.05
    assert m.role_hparams("norm", shape, hp).lr == pytest.approx(eta * depth)
    assert m.role_hparams("final_norm", shape, hp).lr == pytest.approx(eta)
    assert m.role_hparams("attn.q", shape, hp).lr == pytest.approx(eta * n**-0.5 * depth)
    assert m.role_hparams("mlp.down", shape, hp).lr == pytest.approx(eta * (3 * n) ** -0.5 * depth)
    assert m.role_hparams("unembed", shape, hp).lr == pytest.approx(eta)
    assert m.NAME == "uMuP_rules"  # named for what it is: u-muP's per-tensor rules, not its unit-scaled ops


def test_completep_names_the_reference_commit_it_read_and_its_authority():
    source = scalec.load("completep").ir.sources[-1]
    assert "6f8bc3bdc744556141255f810a22387b2255b6c1" in source
    assert "Authority: the CompleteP paper's Table 1" in source
