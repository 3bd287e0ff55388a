"""Optimizers per role (adamw, sgd, muon): the language, the bundled rules against their sources, the desiderata
of each optimizer's theory, and the runtime's one optimizer object (weight-decay conventions, resume)."""

from __future__ import annotations

import dataclasses
from fractions import Fraction

import pytest
import torch

import scalec
from scalec.compiler.analysis import desiderata, equivalence, role_exps
from scalec.dsl.errors import RuleError
from scalec.runtime.plan.planner import PlanError, make_plan
from scalec.runtime.plan.schedule import scale_lrs
from scalec.runtime.trainer.gpt import GPT, GPTConfig

HIDDEN = ("attn.q", "attn.k", "attn.v", "attn.o", "mlp.up", "mlp.gate", "mlp.down")
VECTOR_LIKE = ("embed", "norm", "qk_norm", "final_norm", "bias")


def _n(p, role, kind):
    return role_exps(p.ir, role, kind)["n"]


# ---- the language -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ("role hidden: optimizer = sgd;  beta1 = 0.9", ["sgd", "no target 'beta1'"]),
        ("role *: optimizer = muon", ["muon", "embed"]),
        ("role hidden: optimizer = adam", ["optimizer", "adamw"]),
        ("role hidden: nesterov = true", ["adamw", "no setting 'nesterov'"]),
        ("role hidden: optimizer = muon;  adjust_lr = fast", ["adjust_lr", "original"]),
        ("role hidden: momentum = 0.9", ["adamw", "no target 'momentum'"]),
        ("role hidden: optimizer = muon;  ns_steps = 0", ["ns_steps"]),
    ],
)
def test_a_target_the_optimizer_lacks_is_one_located_error(write_rule, body, words):
    path = write_rule("bad", f'parameterisation Bad extends SP\n  "x"\n  {body}\n')
    with pytest.raises(RuleError) as exc:
        scalec.load(path)
    line = exc.value.headline
    assert f"{path}:3:" in line, line
    for w in words:
        assert w in line, line


def test_switching_optimizer_keeps_lr_and_decay_and_takes_the_new_defaults(write_rule):
    p = scalec.load(write_rule("s", 'parameterisation S extends muP\n  "x"\n  role hidden: optimizer = sgd\n'))
    q = p.role_hparams("attn.q", p.shape(n=256))
    mup = scalec.load("mup").role_hparams("attn.q", p.shape(n=256))
    assert (q.optimizer, q.lr, q.weight_decay) == ("sgd", mup.lr, mup.weight_decay)
    assert q.beta1 is None and q.eps is None and q.momentum == 0 and q.nesterov is False  # torch.optim.SGD defaults


def test_decay_switch_keeps_the_per_step_shrink(write_rule):
    """independent wd = lr x coupled wd: switching convention alone changes no step."""
    p = scalec.load(write_rule("d", 'parameterisation D extends muP\n  "x"\n  role *: decay = independent\n'))
    mup = scalec.load("mup")
    for n in (64, 512):
        shape = p.shape(n=n)
        for role in ("attn.q", "embed", "unembed"):
            a, b = p.role_hparams(role, shape), mup.role_hparams(role, shape)
            assert a.decay == "independent" and a.weight_decay == pytest.approx(b.lr * b.weight_decay)


# ---- bundled rules, cell by cell against their sources --------------------------------------------

# Tensor Programs V (arXiv 2203.03466) Table 3, SGD column, as width exponents: init variance and SGD LR per
# (input weights & all biases, output weights, hidden weights).  Gains are vector-like like biases.
TP5_TABLE3_SGD = {"input": (0, 1), "output": (-2, -1), "hidden": (-1, 0)}


def test_mup_sgd_matches_tensor_programs_v_table3_sgd_column():
    p = scalec.load("mup_sgd")
    # QK-norm gains have d_head entries, not width: their "fan_out" is the head dimension (below)
    wide = [r for r in VECTOR_LIKE if r != "qk_norm"]
    classes = {**dict.fromkeys(wide, "input"), "unembed": "output", **dict.fromkeys(HIDDEN, "hidden")}
    for role, cls in classes.items():
        var, lr = TP5_TABLE3_SGD[cls]
        assert p.ir.optimizer(role) == "sgd"
        assert _n(p, role, "lr") == lr, role
        if p.ir.roles[role]["init_std"].expr != 0:
            assert 2 * _n(p, role, "init_std") == var, role
        assert role_exps(p.ir, role, "mult")["n"] == 0
    assert p.ir.sites["output.mult"].expr == 1  # Table 3 form: no readout multiplier
    # mup's MuSGD keeps coupled lr*wd fixed (vector-like wd / width, output wd x width): torch SGD's L2 shrink.
    for role in classes:
        assert _n(p, role, "lr") + _n(p, role, "weight_decay") == 0, role
    qk_lr, qk_wd = role_exps(p.ir, "qk_norm", "lr"), role_exps(p.ir, "qk_norm", "weight_decay")
    assert (qk_lr["n"], qk_lr["d_head"], qk_wd["n"], qk_wd["d_head"]) == (0, 1, 0, -1)  # lr x m_H, wd / m_H


def test_muon_rule_matches_spectral_scaling_and_completep_depth():
    from torch.optim._muon import _adjust_lr

    p = scalec.load("muon")
    alpha = p.ir.params["alpha"].value
    for role in HIDDEN:
        assert p.ir.optimizer(role) == "muon" and p.ir.settings[role]["adjust_lr"] == "original"
        assert _n(p, role, "lr") == 0 and _n(p, role, "weight_decay") == 0
        assert role_exps(p.ir, role, "lr")["L"] == alpha - 1  # CompleteP Table 1: hidden lr m_L^(alpha-1)
        assert 2 * _n(p, role, "init_std") == -1  # spectral init: std ~ 1/sqrt(fan_in)
    # torch's "original" adjustment is width-free for fan ratio 3 (mlp.up): the effective update's spectral norm
    # lr * adjust stays put, as sqrt(fan_out/fan_in) does (Yang, Simon & Bernstein 2023).
    assert _adjust_lr(1.0, "original", torch.Size([3 * 64, 64])) == _adjust_lr(
        1.0, "original", torch.Size([3 * 512, 512])
    )
    for role in ("embed", "unembed", "norm", "final_norm"):
        assert p.ir.optimizer(role) == "adamw"
    assert role_exps(p.ir, "unembed", "mult")["n"] == -1  # muP readout multiplier kept
    assert role_exps(p.ir, "attn.q", "mult")["n"] == 0
    assert p.ir.sites["residual.attn"].expr.subs("alpha", alpha) != 1


@pytest.mark.slow
def test_mup_indep_wd_extends_mup_and_keeps_the_shrink_width_free():
    p = scalec.load("mup_indep_wd")
    assert p.ir.lineage == ("SP", "muP", "muP_indep_wd")
    for role in ("attn.q", "mlp.down", "embed", "unembed"):
        assert p.ir.decay(role) == "independent" and _n(p, role, "weight_decay") == 0
        assert _n(p, role, "lr") == _n(scalec.load("mup"), role, "lr")
    # at the base shape and default HPs the shrink equals muP's coupled eta x lambda (2^-8 x 0.1)
    r = p.role_hparams("attn.q", p.module.BASE)
    assert r.weight_decay == pytest.approx(2**-8 * 0.1)


# ---- desiderata per optimizer ----------------------------------------------------------------------


@pytest.mark.slow
def test_each_file_is_judged_by_its_own_optimizers_theory(write_rule):
    assert desiderata(scalec.load("mup_sgd")).width_class.startswith("muP-like")
    assert desiderata(scalec.load("muon")).width_class.startswith("muP-like")
    # Adam's muP hidden rule (lr m_N^-1) under SGD: SGD hidden updates need lr m_N^0, so they vanish.
    sgd_on_mup = scalec.load(write_rule("a", 'parameterisation A extends muP\n  "x"\n  role *: optimizer = sgd\n'))
    d = desiderata(sgd_on_mup)
    assert not d.width_class.startswith("muP")
    assert any("attn.q sgd lr width exponent -1" in v.message and "vanish" in v.message for v in d.failed("width"))
    # Moonshot's match_rms_adamw grows the effective lr as 0.2 sqrt(max(A, B)) ~ width^1/2: unscaled lr is unstable.
    rms = scalec.load(
        write_rule(
            "m",
            'parameterisation M extends Muon\n  "x"\n  role hidden: adjust_lr = match_rms_adamw\n',
        )
    )
    d = desiderata(rms)
    assert d.width_class.startswith("SP-like")
    assert any("grow as width^1/2" in v.message and "needs -1/2" in v.message for v in d.failed("width"))


def test_sgd_table8_form_equals_table3_form_under_the_sgd_symmetry(write_rule):
    """Table 8 form (as mup's MuSGD): readout multiplier 1/n, readout init unscaled, lr x width (vector-like);
    the SGD symmetry (mult/c, init*c, lr*c^2) maps it onto Table 3's readout init var n^-2, lr n^-1."""
    t8 = write_rule(
        "t8",
        """parameterisation SGD8 extends SP
          "x"
          hp sgd_ratio = 2^6 in [2^0, 2^12] log
          hp mu = 0.9 in [0, 0.99] linear
          role *: optimizer = sgd;  lr *= sgd_ratio;  momentum = mu
          role hidden: init_var *= m_N^-1
          role embed, norm, final_norm, bias, unembed: lr *= m_N;  weight_decay *= m_N^-1
          role qk_norm: lr *= m_H;  weight_decay *= m_H^-1
          site output.mult = m_N^-1
          site attn.scale = d_head0^(1/2) * d_head^-1
        """,
    )
    e = equivalence(scalec.load(t8), scalec.load("mup_sgd"))
    assert e.equivalent, e.differences
    # The same move under Adam's symmetry (lr*c) is not SGD's: mup (Adam) vs mup_sgd differ by optimizer.
    e = equivalence(scalec.load("mup"), scalec.load("mup_sgd"))
    assert not e.equivalent and any("adamw vs sgd" in d for d in e.differences)


# ---- runtime -------------------------------------------------------------------------------------


def _plan(rule, width=32, **kw):
    model = GPT(GPTConfig(width=width, depth=2, head_dim=16, seq_len=16))
    plan = make_plan(scalec.load(rule) if isinstance(rule, str) else rule, model, {"n": width, "L": 2, "d_head": 16})
    return plan, model


def test_param_groups_carry_only_the_optimizers_own_keys():
    plan, model = _plan("mup_sgd")
    with pytest.raises(PlanError, match="momentum filters"):
        plan.param_groups(model)  # SGD's L2 weight_decay with momentum is not the planned shrink
    plan.entries = [dataclasses.replace(e, weight_decay=0.0) for e in plan.entries]
    groups = plan.param_groups(model)
    assert groups and all("betas" not in g and "eps" not in g and g["momentum"] == 0.9 for g in groups)
    torch.optim.SGD(groups)  # takes them as they are
    plan, model = _plan("muon")
    with pytest.raises(PlanError, match="adamw, muon"):
        plan.param_groups(model)
    muon = plan.param_groups(model, optimizer="muon")
    assert all(set(g["roles"]) <= set(HIDDEN) and "betas" not in g and g["adjust_lr_fn"] == "original" for g in muon)


@pytest.mark.parametrize(("rule", "kind"), [("mup_indep_wd", "independent"), ("mup", "coupled"), ("mup_sgd", "sgd")])
def test_weight_decay_shrinks_as_the_convention_says_under_a_schedule(rule, kind):
    """With zero gradients every optimizer only decays: one step at schedule factor f shrinks a weight by
    f x lambda_ind (independent) or lr x f x wd (coupled, as the file's rule gives them)."""
    p = scalec.load(rule)
    plan, model = _plan(p)
    opt = plan.optimizer(model)
    f = 0.25
    scale_lrs(opt, f)
    w = dict(model.named_parameters())["blocks.0.attn.q.weight"]
    before = w.detach().clone()
    for q in model.parameters():
        q.grad = torch.zeros_like(q)
    opt.step()
    r = p.role_hparams("attn.q", p.shape(n=32, d_head=16))
    shrink = f * r.weight_decay if kind == "independent" else f * r.lr * r.weight_decay
    assert torch.allclose(w.detach(), before * (1 - shrink), rtol=1e-6, atol=0)
    assert shrink > 0


def test_plan_json_carries_the_optimizer_and_round_trips():
    from scalec.runtime.plan.planner import Plan

    plan, _ = _plan("muon")
    data = plan.to_dict()
    q = next(d for d in data["parameters"] if d["role"] == "attn.q")
    assert (q["optimizer"], q["adjust_lr"], q["ns_steps"], q["nesterov"], q["betas"]) == (
        "muon",
        "original",
        5,
        True,
        None,
    )
    assert Plan.from_json(plan.to_json()).entries == plan.entries


def test_one_optimizer_object_resumes_bit_identically():
    torch.manual_seed(0)
    x = torch.randint(0, 256, (4, 16))

    def run(steps, state=None, model_state=None):
        plan, model = _plan("muon")
        torch.manual_seed(1)
        plan.init_(model)
        opt = plan.optimizer(model)
        if state is not None:
            model.load_state_dict(model_state)
            opt.load_state_dict(state)
        for _ in range(steps):
            model(x, x).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        return model, opt

    whole, _ = run(4)
    half, opt = run(2)
    resumed, _ = run(2, opt.state_dict(), half.state_dict())
    for (n, a), (_, b) in zip(whole.named_parameters(), resumed.named_parameters(), strict=True):
        assert torch.equal(a, b), n


def test_adamw_is_fused_where_torch_has_the_kernel():
    """CPU has torch's fused AdamW (1.11x per step): plan.optimizer and the trainer use it unless told not to."""
    from scalec.runtime.trainer.train import build_optimizer

    plan, model = _plan("mup")
    assert plan.optimizer(model).defaults["fused"] is True
    assert build_optimizer(plan, model, torch.device("cpu")).defaults["fused"] is True
    assert not plan.optimizer(model, fused=False).defaults["fused"]
    plan, model = _plan("muon")  # a PlanOptimizer: its AdamW part is fused, Muon takes no such option
    opt = plan.optimizer(model, foreach=True)
    assert opt.optimizers["adamw"].defaults["fused"] is True


def test_fused_adamw_follows_the_unfused_loop_to_float_tolerance():
    torch.manual_seed(0)
    x = torch.randint(0, 256, (4, 16))

    def run(steps, **options):
        plan, model = _plan("completedp")
        torch.manual_seed(1)
        plan.init_(model)
        opt = plan.optimizer(model, **options)
        for _ in range(steps):
            model(x, x).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        return model

    # one step agrees to float32 rounding; later steps drift where Adam divides tiny moments (m / sqrt(v))
    for steps, atol in ((1, 1e-7), (5, 1e-5)):
        fused, loop = run(steps), run(steps, fused=False, foreach=False)
        for (n, a), (_, b) in zip(fused.named_parameters(), loop.named_parameters(), strict=True):
            assert torch.allclose(a, b, rtol=1e-5, atol=atol), (steps, n)
    assert not all(torch.equal(a, b) for a, b in zip(fused.parameters(), loop.parameters(), strict=True))


def test_umup_rule_matches_the_paper_where_the_language_reaches():
    """u-muP (Blake et al. 2024): unit init, linear layers scaled by fan_in^-1/2 in the forward pass, readout by
    1/fan_in, hidden Adam lr fan_in^-1/2 with depth-muP's L^-1/2, independent weight decay."""
    p = scalec.load("umup")
    plan, _ = _plan(p, width=64)
    for e in plan.entries:
        if e.role in HIDDEN + ("embed", "unembed"):
            assert e.init_std == 1.0, e.name
        assert e.decay == "independent"
    down, q = plan.entry("blocks.0.mlp.down.weight"), plan.entry("blocks.0.attn.q.weight")
    assert plan.multipliers["mult[mlp.down]"] == pytest.approx((3 * 64) ** -0.5)  # fan_in of mlp.down is 3n
    assert plan.multipliers["mult[attn.q]"] == pytest.approx(64**-0.5)
    assert plan.multipliers["mult[unembed]"] == pytest.approx(1 / 64)
    eta, m_l = 2**-5, 2 / 2
    assert down.lr == pytest.approx(eta * (3 * 64) ** -0.5 * m_l**-0.5)
    assert q.lr == pytest.approx(eta * 64**-0.5)
    # unit_scaling's lr_scale_func_adam: an embedding's fan_in is its output dim, lr d_model^-1/2
    assert plan.entry("embed.weight").lr == pytest.approx(eta * 64**-0.5)
    assert p.ir.sites["residual.attn"].expr == p.ir.sites["residual.mlp"].expr
    assert role_exps(p.ir, "attn.q", "lr")["L"] == Fraction(-1, 2)
    # u-muP's embedding LR rule (lr d_model^-1/2) departs from muP's input condition on purpose, and says so
    failed = [v.message for v in desiderata(p).verdicts if v.area == "width" and v.passed is False]
    assert failed == ["embed adamw lr width exponent -1/2: updates vanish as width^-1/2; needs 0"]
    assert "NOT a u-muP model" in p.ir.sources[-1] and "tau_i" in p.ir.sources[-1]  # says what it is not


def test_folding_uses_each_roles_optimizers_symmetry():
    """Plan-time folding follows the role's optimizer: Adam lr x c, SGD lr x c^2 (tests/test_runtime_folding.py
    trains both against the applied multipliers)."""
    cfg = GPTConfig(width=64, depth=2, head_dim=16, seq_len=16, vocab=64, qk_norm=False)
    shape = {"n": 64, "L": 2, "d_head": 16}
    c = (32 / 16) ** 0.5  # muP's attn.scale (d_head0 = 32) over 1/sqrt(d_head)
    for rule, power in (("mup", 1), ("mup_sgd", 2)):
        rules = scalec.load(rule)
        plain = make_plan(rules, GPT(cfg), shape).entry("blocks.0.attn.q.weight")
        folded = make_plan(rules, GPT(cfg), shape, applied_sites={"output.mult"}, fold=True)
        assert any(line.startswith("attn.scale -> attn.q") for line in folded.folded)
        assert folded.entry("blocks.0.attn.q.weight").lr == pytest.approx(plain.lr * c**power), rule


def test_momentum_has_one_domain_for_rules_and_tunable_hps(write_rule):
    """compiler/domain.py defines the targets' domains once (a rule leaving [0, 1) is refused, ns_steps is whole)
    and compiler/hp_domains.py derives the same [0, 1) for the HP that flows into momentum (mup_sgd's mu)."""
    from scalec.compiler.domain import domain_of
    from scalec.compiler.module_inputs import domain_violation

    assert domain_of("ns_steps").holds(5) and not domain_of("ns_steps").holds(5.5)

    path = write_rule("m", 'parameterisation M extends muP\n  "x"\n  role hidden: optimizer = sgd;  momentum = 1\n')
    with pytest.raises(RuleError, match=r"momentum of role 'attn.q' leaves its domain \(0 <= momentum < 1\)"):
        scalec.load(path)
    mu = scalec.load("mup_sgd").module.HP_SPACE["mu"]
    assert domain_violation("mu", 1.0, mu) == "mu must satisfy 0 <= mu < 1; got 1"
    assert domain_violation("mu", 0.9, mu) is None
