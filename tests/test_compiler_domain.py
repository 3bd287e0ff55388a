"""The feasible region: derived exactly (log-linear constraints, sympy roots), compiled into check_shape, and exact
in both directions (every accepted shape gives in-domain HPs, every refused shape breaks a stated constraint)."""

from __future__ import annotations

import dataclasses
import math
import os
import subprocess
import sys

import pytest
import sympy
from hypothesis import given, settings
from hypothesis import strategies as st

import scalec
from scalec.compiler.domain import DOMAINS, SITE_DOMAIN
from scalec.compiler.exponents import exponent_table
from scalec.compiler.region import describe
from scalec.compiler.vocabulary import DEFAULT_FANS
from scalec.dsl.errors import RuleError
from tests.conftest import BUNDLED

# Hand-derived from rules/sp.scale: B0 = 2^12, D0 = 2^22, so S0 = 1024; beta1 = 0.9, beta2 = 0.95.
# Complete(d)P: 1-beta = (1-beta0) * m_B/m_D = (1-beta0) * S0/S <= 1  <=>  S >= S0 * (1-beta0).
S0 = 2**22 / 2**12
STEPS_BETA1 = S0 * (1 - 0.9)  # 102.4 -> at least 103 whole steps
STEPS_BETA2 = S0 * (1 - 0.95)  # 51.2


def shape_of(p, **axes):
    """An unchecked module.Shape (missing axes at the base): the tests call check_shape themselves."""
    return dataclasses.replace(p.module.BASE, **{k: float(v) for k, v in axes.items()})


def test_completedp_step_condition_is_derived_not_a_box():
    p = scalec.load("completedp")
    assert p.module.AXIS_RANGES["B"] == (2.0**8, 2.0**24) and p.module.AXIS_RANGES["D"] == (2.0**16, 2.0**44)
    lines = [describe(c, p.ir) for c in p.ir.constraints]
    assert lines[0].startswith("S = D/B >= 102.4 (at least 103 optimizer steps): 1-beta1 = 0.1*S0/S")
    assert lines[1].startswith("S = D/B >= 51.2 (at least 52 optimizer steps): 1-beta2 = 0.05*S0/S")
    assert math.ceil(STEPS_BETA1) == 103 and math.ceil(STEPS_BETA2) == 52


def test_check_shape_says_the_step_condition_in_the_users_terms():
    p = scalec.load("completedp")
    with pytest.raises(p.module.ShapeError) as info:
        p.module.check_shape(shape_of(p, B=2**14, D=2**16))
    assert str(info.value) == (
        "CompleteDP needs at least 103 optimizer steps here (S = D/B >= 102.4), because 1-beta1 = 0.1*S0/S must "
        "stay <= 1 (0 <= beta1 < 1); this run has 4 (B=2^14, D=2^16)"
    )


def test_step_condition_edges_and_hp_dependence():
    p = scalec.load("completedp")
    B = 2.0**14
    p.module.check_shape(shape_of(p, B=B, D=B * 102.5))  # S = 102.5 >= 102.4: beta1 = 1 - 102.4/102.5 > 0
    assert p.role_hparams("attn.q", shape_of(p, B=B, D=B * 102.5)).beta1 == pytest.approx(1 - 102.4 / 102.5)
    with pytest.raises(p.module.ShapeError, match="at least 103"):
        p.module.check_shape(shape_of(p, B=B, D=B * 102.3))
    # beta1 = 0.5 at the base: 1-beta1 = 0.5*S0/S <= 1 needs S >= 512.
    with pytest.raises(p.module.ShapeError, match=r"at least 512 optimizer steps here \(S = D/B >= 512\)"):
        p.module.check_shape(shape_of(p, B=B, D=B * 500), p.hparams(beta1=0.5))
    p.module.check_shape(shape_of(p, B=B, D=B * 500))


def test_completedp_accepts_the_shapes_llms_train_at():
    p = scalec.load("completedp")
    shape = shape_of(p, n=4096, L=32, B=2**21, D=2**38)  # 2^17 steps
    p.module.check_shape(shape)
    assert p.role_hparams("attn.q", shape).beta1 == pytest.approx(1 - 0.1 * S0 / 2**17)  # 0.99922
    p.module.check_shape(shape_of(p, B=2**24, D=2**44))
    moved = scalec.load("completedp", base={"B": 2**20, "D": 2**36})  # S0 = 2^16: S >= 6553.6
    assert describe(moved.ir.constraints[0], moved.ir).startswith("S = D/B >= 6554 (at least 6554 optimizer")
    moved.module.check_shape(shape_of(moved, n=4096, L=32, B=2**21, D=2**38))


def test_base_outside_the_region_is_refused():
    with pytest.raises(RuleError, match=r"base shape lies outside the feasible region: it needs S0 = D0/B0 >= 1"):
        scalec.load("completedp", base={"B": 2**24})


def test_log_linear_constraint_on_one_axis_becomes_an_axis_bound(write_rule):
    # 1-beta1 = 0.1 * m_B^2 <= 1  <=>  B <= 2^12 * sqrt(10) = 12952.8
    p = scalec.load(write_rule("a", "parameterisation A extends SP\n  role *: 1-beta1 *= m_B^2\n"))
    (c, _) = p.ir.constraints
    assert describe(c, p.ir).startswith("B <= 1.295e+04: 1-beta1 = 0.1*m_B^2 must stay <= 1")
    p.module.check_shape(shape_of(p, B=12952))
    with pytest.raises(p.module.ShapeError, match=r"needs B <= 1.295e\+04 here.*this run has B = 1.296e\+04"):
        p.module.check_shape(shape_of(p, B=12960))


def test_interior_zero_is_an_error_naming_the_shape(write_rule):
    path = write_rule("z", "parameterisation Z extends CompleteP\n  role *: eps *= (m_N - 2)^2\n")
    with pytest.raises(RuleError) as info:
        scalec.load(path)
    first = str(info.value).splitlines()[0]
    assert first.endswith("error: eps of role 'embed' leaves its domain (eps > 0): eps = 0 at n = 256 (m_N = 2)")
    assert "z.scale:2:" in first


def test_interior_pole_is_an_error(write_rule):
    path = write_rule("p", "parameterisation P extends SP\n  role hidden: lr *= -2 / (m_N - 3)\n")
    with pytest.raises(RuleError, match=r"lr = infinite at n = 384 \(m_N = 3\)"):
        scalec.load(path)


@pytest.mark.slow
def test_what_the_analysis_cannot_decide_is_a_warning(write_rule):
    # (m_N - m_L)^2 + 1 > 0, but written expanded, interval arithmetic cannot prove it and it has two variables.
    path = write_rule("w", "parameterisation W extends SP\n  role *: eps *= m_N^2 - 2*m_N*m_L + m_L^2 + 1\n")
    p = scalec.load(path)
    assert any(w.startswith("cannot decide whether eps of role 'embed' keeps eps > 0") for w in p.report.warnings)


@pytest.mark.slow
def test_a_found_violation_in_two_variables_is_an_error(write_rule):
    # eps = 1e-8 * (m_N + m_L - 1) = -3.75e-9 at n = 16, L = 1 (m_N = 1/8, m_L = 1/2).
    path = write_rule("v", "parameterisation V extends SP\n  role *: eps *= m_N + m_L - 1\n")
    with pytest.raises(RuleError, match=r"eps = -3.75e-09 at n = 16, L = 1 \(m_N = 0.125, m_L = 0.5\)"):
        scalec.load(path)


def test_half_life_form_stays_in_the_unit_interval_without_a_step_condition():
    p = scalec.load("completedp_halflife")
    assert [c.reason for c in p.ir.constraints] == ["a run takes at least one optimizer step"]
    for B, D in ((2**24, 2**24), (2**8, 2**44), (2**12, 2**22)):
        r = p.role_hparams("mlp.up", shape_of(p, B=B, D=D))
        assert 0 < r.beta1 < 1 and 0 < r.beta2 < 1
        assert r.beta1 == pytest.approx(0.9 ** ((B / 2**12) / (D / 2**22)))


@pytest.mark.slow
def test_half_life_form_agrees_with_the_linear_rule_to_first_order():
    half, lin = scalec.load("completedp_halflife").ir, scalec.load("completedp").ir
    c, beta1 = sympy.symbols("c beta1", positive=True)
    for role in ("embed", "attn.q", "unembed"):
        h = {s.name: s for s in half.roles[role]["beta1"].expr.free_symbols}
        one_minus_half = 1 - half.roles[role]["beta1"].expr.subs(h["beta1"], 1 - c)
        series = sympy.series(one_minus_half, c, 0, 2).removeO()
        one_minus_lin = (1 - lin.roles[role]["beta1"].expr).subs(h["beta1"], 1 - c)
        assert sympy.simplify(series - one_minus_lin) == 0
        assert sympy.simplify(one_minus_lin - c * h["m_B"] / h["m_D"]) == 0
    assert (
        exponent_table(half).get("attn.q", "1-beta2").exponents
        == exponent_table(lin).get("attn.q", "1-beta2").exponents
    )


def test_beta_exponent_with_ratios_is_only_for_beta_targets(write_rule):
    path = write_rule("e", "parameterisation E extends SP\n  role *: lr *= eta^(m_B/m_D)\n")
    with pytest.raises(RuleError, match="only beta rules may raise to a product of ratio powers"):
        scalec.load(path)


# ---- exactness in both directions, for every bundled rule -----------------------------------------------------
RULES = BUNDLED


def _breaks_something(p, shape, hp) -> bool:
    """Independent of check_shape: outside the box, fewer than one step, or some HP outside its domain."""
    for axis, (low, high) in p.module.AXIS_RANGES.items():
        if not low <= getattr(shape, axis) <= high:
            return True
    if shape.D / shape.B < 1:
        return True
    for role in p.module.ROLES:
        r = _unchecked_values(p, role, shape, hp)
        values = {k: getattr(r, k) for k in DOMAINS}  # None: not a target of the role's optimizer
        if not all(DOMAINS[k].holds(v) for k, v in values.items() if v is not None):
            return True
    return not all(SITE_DOMAIN.holds(v) for v in p.module._sites(shape).as_dict().values())


def _unchecked_values(p, role, shape, hp):
    """The role's rule function itself (role_hparams checks the region first), at the bundled GPT's fans."""
    (c_in, e_in), (c_out, e_out) = DEFAULT_FANS[role]
    fans = {"fan_in": c_in * shape.n**e_in, "fan_out": c_out * shape.n**e_out}
    return p.module._ROLE_RULES[role](shape, hp, **fans, layer=0)


@pytest.mark.parametrize("name", RULES)
@settings(max_examples=40, deadline=None)
@given(
    st.floats(3, 17),
    st.floats(0, 10.5),
    st.floats(7, 25),
    st.floats(-1, 21),  # log2 of the steps S = D/B
    st.floats(2.5, 9.5),
    st.floats(0.5, 0.99),
    st.floats(0.8, 0.9999),
)
def test_accepted_shapes_give_in_domain_hps_and_refused_shapes_break_a_constraint(name, ln, ll, lb, ls, lh, b1, b2):
    p = scalec.load(name)
    shape = p.module.Shape(n=2**ln, L=2**ll, B=2**lb, D=2 ** (lb + ls), d_head=2**lh)
    hp = p.hparams(beta1=b1, beta2=b2)
    try:
        p.module.check_shape(shape, hp)
    except p.module.ShapeError:
        assert _breaks_something(p, shape, hp), (name, shape, hp)
    else:
        assert not _breaks_something(p, shape, hp), (name, shape, hp)


@pytest.mark.slow
def test_cli_check_prints_the_feasible_region():
    res = subprocess.run(
        [sys.executable, "-m", "scalec.cli", "check", "completedp", "completedp_halflife"],
        capture_output=True,
        text=True,
        env=dict(os.environ, COLUMNS="250"),
    )
    assert res.returncode == 0, res.stderr
    assert "region: axes n in [16, 65536], L in [1, 1024], B in [2^8, 2^24], D in [2^16, 2^44]" in res.stdout
    assert "region: S = D/B >= 102.4 (at least 103 optimizer steps)" in res.stdout


@pytest.mark.slow
def test_cli_plans_complete_d_p_at_llm_batch_sizes():
    res = subprocess.run(
        [sys.executable, "-m", "scalec.cli", "plan", "completedp", "--model", "gpt", "--width", "512", "--depth", "8"]
        + ["--batch", "32768", "--duration", "64000000"],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
    assert "mlp.down" in res.stdout


def test_make_plan_uses_the_shared_domains_and_the_hp_dependent_region():
    from scalec.runtime.plan.planner import PlanError, make_plan
    from scalec.runtime.trainer.gpt import GPT, GPTConfig

    rules = scalec.load("completedp")
    model = GPT(GPTConfig(width=32, depth=1, head_dim=16, seq_len=16, vocab=64))
    shape = {"n": 32, "L": 1, "d_head": 16, "B": 2**12, "D": 2**12 * 300}  # 300 steps >= 102.4
    make_plan(rules, model, shape)
    bad = rules.module.HParams().replace(**{"lr[attn.q]": -1.0})  # an HParams object: the module checks it
    with pytest.raises(PlanError, match=r"hp lr\[attn.q\] = -1 is outside its domain lr\[attn.q\] > 0"):
        make_plan(rules, model, shape, hp=bad)
    with pytest.raises(PlanError, match=r"at least 512 optimizer steps here"):  # beta1 = 0.5: S >= 1024 * 0.5
        make_plan(rules, model, shape, hp={"beta1": 0.5})


def test_domains_hold_over_the_param_range_too(write_rule):
    # alpha = 1 (the default): lr *= 2 - m_L^0 = 1; alpha = 1/2 (allowed by --param): lr *= 2 - m_L, 0 at m_L = 2.
    path = write_rule("pa", "parameterisation PA extends CompleteP\n  role hidden: lr *= 2 - m_L^(2 - 2*alpha)\n")
    with pytest.raises(RuleError, match=r"lr = 0 at L = 4 \(m_L = 2\) \(with param alpha = 1/2\)"):
        scalec.load(path)
