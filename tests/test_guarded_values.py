"""Every value that leaves the compiled module or the Python API lies in its domain, or is refused in one line
(issue 23, items 4-5); HP domains come from the targets each HP enters, not from its name."""

from __future__ import annotations

from pathlib import Path

import pytest

import scalec
from scalec.compiler.domain import DOMAINS, SITE_DOMAIN
from scalec.compiler.parameterisation import HParamError, RuleValueError, ShapeValueError
from scalec.dsl.errors import RuleError


def test_module_role_hparams_refuses_a_shape_outside_the_region_instead_of_a_negative_beta():
    # Complete(d)P: 1-beta1 = 0.1 * S0/S with S0 = 2^22/2^12 = 1024; 2 steps would give beta1 = 1 - 51.2 = -50.2.
    m = scalec.load("completedp").module
    shape = m.Shape(n=256, L=4, B=2**21, D=2**22, d_head=32)
    with pytest.raises(m.ShapeError, match=r"at least 103 optimizer steps"):
        m.role_hparams("attn.q", shape)
    with pytest.raises(m.ShapeError, match=r"at least 103 optimizer steps"):
        m.sites(shape)


def test_api_role_hparams_checks_the_region_at_the_callers_hps():
    # beta1 = 0.85: 1-beta1 = 0.15 * 1024/S <= 1 needs S >= 153.6; B = 2^15 at D = 2^22 is 128 steps, which the
    # default beta1 = 0.9 allows (S >= 102.4) -- so p.shape() at the defaults accepts it.
    p = scalec.load("completedp")
    shape = p.shape(B=2**15)
    assert p.role_hparams("embed", shape).beta1 == pytest.approx(1 - 0.1 * 1024 / 128)
    with pytest.raises(ShapeValueError, match=r"at least 154 optimizer steps") as info:
        p.role_hparams("embed", shape, p.hparams(beta1=0.85))
    assert str(info.value).startswith("error: ") and "\n" not in str(info.value)
    with pytest.raises(ShapeValueError, match=r"at least 154 optimizer steps"):
        p.shape(hp=p.hparams(beta1=0.85), B=2**15)


def test_module_refuses_an_hparams_object_outside_the_domain():
    p = scalec.load("mup")
    with pytest.raises(p.module.HParamError, match=r"hp beta1 = 1.5 is outside its domain 0 <= beta1 < 1"):
        p.module.role_hparams("embed", p.module.BASE, p.module.HParams(beta1=1.5))
    with pytest.raises(HParamError, match=r"^error: .*hp lr\[mlp.up\] = -2 is outside its domain lr\[mlp.up\] > 0"):
        p.role_hparams("mlp.up", p.shape(), p.module.HParams(multipliers={"lr[mlp.up]": -2.0}))


def test_a_value_that_leaves_its_domain_away_from_the_base_is_refused(write_rule):
    # lr *= 1 + sigma - sigma * m_N^(1/4): 1 at the base; at n = 65536 (m_N = 256, m_N^(1/4) = 4) and sigma = 1 it is
    # 1 + 1 - 4 = -2 < 0. The default sigma = 0.02 keeps it positive on the whole box (1.02 - 0.08).
    path = write_rule("s", "parameterisation S extends muP\n  role hidden: lr *= 1 + sigma - sigma * m_N^(1/4)\n")
    p = scalec.load(path)
    wide = p.shape(n=65536)
    assert p.role_hparams("mlp.up", wide).lr > 0
    with pytest.raises(RuleValueError, match=r"role 'mlp.up' gets lr = -.* outside lr > 0") as info:
        p.role_hparams("mlp.up", wide, p.hparams(sigma=1))
    assert "\n" not in str(info.value)
    with pytest.raises(p.module.DomainError):
        p.module.role_hparams("mlp.up", wide, p.module.HParams(sigma=1.0))


def _root(**swaps: str) -> str:
    """sp.scale (the root file) with some lines swapped: a root may name its HPs freely."""
    text = (Path(__file__).parents[1] / "rules" / "sp.scale").read_text()
    for old, new in swaps.items():
        assert old in text
        text = text.replace(old, new)
    return text.replace("parameterisation SP", "parameterisation Root")


def test_hp_domains_come_from_the_targets_not_the_names(write_rule):
    # umup's lambda_ind is an independent weight decay (>= 0); the old name guess let -0.5 through.
    with pytest.raises(HParamError, match=r"lambda_ind must satisfy lambda_ind >= 0; got -0.5"):
        scalec.load("umup").hparams(lambda_ind=-0.5)
    # beta1 = 1 - c: in [0, 1) iff 0 < c <= 1 (by hand); a linear hp named c had no domain by name.
    swaps = {
        "hp beta1 = 0.9 in [0.5, 0.99] linear": "hp c = 0.1 in [0.01, 1] linear",
        "beta1 = beta1;": "beta1 = 1 - c;",
    }
    p = scalec.load(write_rule("c", _root(**swaps)))
    assert p.module.HP_SPACE["c"].domain.text == "0 < c <= 1"
    p.hparams(c=1)
    for bad in (0, 1.01, -0.1):
        with pytest.raises(HParamError, match=r"c must satisfy 0 < c <= 1"):
            p.hparams(c=bad)
    # an hp named like a beta that flows into a learning rate is a positive number, not a [0, 1) one
    swaps = {"hp eta = 2^-8 in": "hp beta_lr = 2^-8 in", "lr = eta;": "lr = beta_lr;"}
    q = scalec.load(write_rule("b", _root(**swaps)))
    assert q.module.HP_SPACE["beta_lr"].domain.text == "beta_lr > 0"
    q.hparams(beta_lr=3)


def test_a_search_range_outside_the_derived_domain_is_a_compile_error(write_rule):
    swaps = {
        "hp beta1 = 0.9 in [0.5, 0.99] linear": "hp c = 0.1 in [0.01, 2] linear",
        "beta1 = beta1;": "beta1 = 1 - c;",
    }
    with pytest.raises(RuleError, match=r"hp c: its search range \[1/100, 2\] leaves its domain 0 < c <= 1"):
        scalec.load(write_rule("r", _root(**swaps)))


def test_generated_domains_agree_with_the_compilers():
    m = scalec.load("muon").module
    samples = (-1.0, 0.0, 0.5, 1.0, 2.5, 5.0, float("inf"), float("nan"))
    for kind, ours in [*DOMAINS.items(), ("site", SITE_DOMAIN)]:
        theirs = m.VALUE_DOMAINS[kind]
        assert theirs.text == ours.text.replace(ours.kind, theirs.kind)
        assert [theirs.holds(x) for x in samples] == [ours.holds(x) for x in samples], kind


def test_cli_show_refuses_a_value_outside_its_domain_in_one_line(write_rule):
    from typer.testing import CliRunner

    from scalec.cli import app

    path = write_rule("s", "parameterisation S extends muP\n  role hidden: lr *= 1 + sigma - sigma * m_N^(1/4)\n")
    result = CliRunner().invoke(app, ["show", str(path), "-n", "65536", "--hp", "sigma=1"])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 1 and len(lines) == 1, result.output
    assert lines[0].startswith("error: S: role 'attn.q' gets lr = -") and "outside lr > 0" in lines[0]
