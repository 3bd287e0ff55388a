"""Properties over random shapes and HPs of every bundled rule (issue 23, item 11): every value the compiled module
or the Python API returns is in its domain, or the call is refused in one line; an abc-equivalent pair (muP's
Table 8 and Table 3 forms) trains to the same weights."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import scalec
from scalec.compiler.domain import DOMAINS, SITE_DOMAIN
from scalec.compiler.loader import bundled_rules
from scalec.errors import ScalecError
from scalec.runtime.plan.planner import make_plan
from scalec.runtime.trainer.gpt import GPT, GPTConfig

RULES = sorted(bundled_rules())
# Values an HP may be handed: inside its search range, far outside it, at the edges of any domain, and junk.
HP_VALUES = st.one_of(
    st.floats(-2.0, 2.0),
    st.sampled_from([0.0, 1.0, -1.0, 1e-300, 1e300, 0.5, 0.999999, 2.0**-9, 64.0]),
    st.floats(allow_nan=True, allow_infinity=True),
)


def _hparams(p, data):
    """Default HParams with a random subset of the HPs (global and per-module) set to random values, unchecked."""
    names = sorted(p.module.HP_SPACE)
    chosen = data.draw(st.lists(st.sampled_from(names), max_size=4, unique=True))
    return p.module.HParams().replace(**{n: data.draw(HP_VALUES) for n in chosen})


def _shape(p, data):
    """A module.Shape anywhere around the axis box (log2 axes up to two octaves beyond it), unchecked."""
    values = {}
    for axis, (low, high) in p.module.AXIS_RANGES.items():
        values[axis] = 2.0 ** data.draw(st.floats(math.log2(low) - 2, math.log2(high) + 2))
    return p.module.Shape(**values)


def _in_domain(values) -> bool:
    return all(
        getattr(values, kind) is None or DOMAINS[kind].holds(getattr(values, kind))
        for kind in DOMAINS
        if hasattr(values, kind)
    )


@pytest.mark.slow
@pytest.mark.parametrize("name", RULES)
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_value_the_api_returns_is_in_its_domain_or_refused_in_one_line(name, data):
    p = scalec.load(name)
    shape, hp = _shape(p, data), _hparams(p, data)
    layered = getattr(p.module, "LAYERED_ROLES", frozenset())
    for role in p.module.ROLES:
        layer = {"layer": data.draw(st.integers(0, max(0, int(shape.L) - 1)))} if role in layered else {}
        if role in layered and shape.L < 1:
            continue
        try:
            values = p.role_hparams(role, shape, hp, **layer)
        except ScalecError as exc:
            assert "\n" not in str(exc) and str(exc).startswith("error: "), str(exc)
            continue
        assert _in_domain(values), (name, role, shape, hp, values)
    try:
        sites = p.sites(shape, hp)
    except ScalecError as exc:
        assert "\n" not in str(exc)
    else:
        assert all(SITE_DOMAIN.holds(v) for v in sites.as_dict().values()), (name, shape, sites)


@pytest.mark.slow
@pytest.mark.parametrize("name", RULES)
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_value_the_module_returns_is_in_its_domain_or_raises_its_own_errors(name, data):
    p = scalec.load(name)
    m = p.module
    shape, hp = _shape(p, data), _hparams(p, data)
    refusals = (m.ShapeError, m.HParamError, m.DomainError)
    for role in m.ROLES:
        if role in getattr(m, "LAYERED_ROLES", frozenset()):
            continue  # depth profiles: the API test above draws their block index
        try:
            values = m.role_hparams(role, shape, hp)
        except refusals as exc:
            assert "\n" not in str(exc)
            continue
        assert _in_domain(values), (name, role, shape, hp, values)
    for hp_name, spec in m.HP_SPACE.items():  # every HP the module takes passes its own domain check
        assert spec.domain.holds(spec.default), hp_name


def _train(model: GPT, plan, tokens: torch.Tensor, steps: int = 3) -> None:
    opt = torch.optim.AdamW(plan.param_groups(model))
    for _ in range(steps):
        loss = model(tokens[:, :-1], tokens[:, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()


@pytest.mark.slow
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    width=st.sampled_from([32, 64, 256]),
    log_eta=st.floats(-12, -5),
    sigma=st.floats(0.005, 0.1),
    lam=st.one_of(st.just(0.0), st.floats(1e-6, 0.5)),  # subnormals are refused as input (scalec/parsing.py)
    beta1=st.floats(0.5, 0.95),
    beta2=st.floats(0.8, 0.999),
)
def test_mup_table8_and_table3_forms_train_to_the_same_weights(width, log_eta, sigma, lam, beta1, beta2):
    """The abc-symmetry (design.md): readout theta_3 = c theta_8 with c = 1/m_N, lr x c, coupled wd / c, eps x c.
    The two files scale no eps, so eps is set far below every gradient (1e-16): then the runs agree to float64
    rounding, the readout differing by exactly c."""
    cfg = GPTConfig(width=width, depth=2, head_dim=16, seq_len=8, vocab=32)
    shape = {"n": width, "L": 2, "d_head": 16}
    hp = {"eta": 2.0**log_eta, "sigma": sigma, "lambda": lam, "beta1": beta1, "beta2": beta2, "eps": 1e-16}
    table8 = make_plan(scalec.load("mup"), GPT(cfg), shape, hp=hp)
    table3 = make_plan(scalec.load("mup_table3"), GPT(cfg), shape, hp=hp)
    c = table8.multipliers["output.mult"] / table3.multipliers["output.mult"]
    assert c == pytest.approx(128 / width)  # 1/m_N, n0 = 128 (by hand)
    torch.manual_seed(0)
    a = GPT(cfg, table8.multipliers).double()
    b = GPT(cfg, table3.multipliers).double()
    b.load_state_dict(a.state_dict())
    with torch.no_grad():
        b.unembed.weight.mul_(c)
    tokens = torch.randint(0, 32, (2, 9), generator=torch.Generator().manual_seed(1))
    _train(a, table8, tokens)
    _train(b, table3, tokens)
    for (name, x), y in zip(a.named_parameters(), b.parameters(), strict=True):
        expected = x * c if name == "unembed.weight" else x
        assert torch.allclose(y, expected, rtol=1e-9, atol=1e-12), name
