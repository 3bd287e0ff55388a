"""The bundled rule files: checks pass, design.md tables reproduced cell by cell, desiderata, equivalence."""

from __future__ import annotations

from dataclasses import astuple
from fractions import Fraction as F

import pytest
import sympy

import scalec
from scalec.compiler.analysis import desiderata, equivalence
from scalec.compiler.checks import check_identity_at_base
from scalec.compiler.exponents import exponent_table
from tests.conftest import BUNDLED

HIDDEN = ["attn.q", "attn.k", "attn.v", "attn.o", "mlp.up", "mlp.gate", "mlp.down"]
A = sympy.Symbol("alpha", real=True)


def cell(table, role: str, hp: str) -> tuple:
    row = table.get(role, hp)
    return tuple(row.symbolic[a] for a in ("n", "L", "B", "D"))


def s(*xs) -> tuple:
    return tuple(str(sympy.sympify(x)).replace("**", "^") for x in xs)


def var(table, role):
    """Init variance exponents = 2 x init std exponents (zero init counts as exponent 0)."""
    row = table.get(role, "init_std")
    return tuple(str(sympy.sympify(row.symbolic[a]) * 2) for a in ("n", "L", "B", "D"))


# Complete(d)P, Table 1 of arXiv 2512.22382 as transcribed in design.md.
COMPLETEDP = [
    ("residual.attn", "site", s(0, "-alpha", 0, 0)),
    ("residual.mlp", "site", s(0, "-alpha", 0, 0)),
    *[(r, "var", s(0, 0, 0, 0)) for r in ("embed", "bias", "norm", "final_norm")],
    *[(r, "var", s(-1, 0, 0, 0)) for r in HIDDEN],
    ("unembed", "var", s(-2, 0, 0, 0)),
    *[(r, "lr", s(0, 0, "1/2", "-1/2")) for r in ("embed", "final_norm")],
    *[(r, "lr", s(-1, "alpha - 1", "1/2", "-1/2")) for r in HIDDEN],
    *[(r, "lr", s(0, "alpha - 1", "1/2", "-1/2")) for r in ("bias", "norm", "qk_norm")],
    ("unembed", "lr", s(-1, 0, "1/2", "-1/2")),
    *[(r, "eps", s(-1, "-alpha", "-1/2", "1/2")) for r in HIDDEN + ["bias", "norm"]],
    ("qk_norm", "eps", s(0, "-alpha", "-1/2", "1/2")),
    ("embed", "eps", s(-1, 0, "-1/2", "1/2")),
    *[(r, "eps", s(0, 0, "-1/2", "1/2")) for r in ("unembed", "final_norm")],
    *[(r, "weight_decay", s(1, 0, "1/2", "-1/2")) for r in HIDDEN + ["unembed"]],
    *[(r, "weight_decay", s(0, 0, "1/2", "-1/2")) for r in ("embed", "bias", "norm", "qk_norm", "final_norm")],
    *[(r, b, s(0, 0, 1, -1)) for r in scalec.load("sp").module.ROLES for b in ("1-beta1", "1-beta2")],
    ("training", "steps", s(0, 0, -1, 1)),
    ("output.mult", "site", s(0, 0, 0, 0)),
]

# CompleteP (arXiv 2505.01618, Table 1): no batch/duration factors; readout multiplier 1/m_N with init and
# lr unscaled; embedding eps unscaled; no QK-norm rule.
COMPLETEP = [
    ("residual.attn", "site", s(0, "-alpha", 0, 0)),
    ("output.mult", "site", s(-1, 0, 0, 0)),
    *[(r, "var", s(-1, 0, 0, 0)) for r in HIDDEN],
    ("unembed", "var", s(0, 0, 0, 0)),
    *[(r, "lr", s(-1, "alpha - 1", 0, 0)) for r in HIDDEN],
    *[(r, "lr", s(0, "alpha - 1", 0, 0)) for r in ("bias", "norm", "qk_norm")],
    *[(r, "lr", s(0, 0, 0, 0)) for r in ("embed", "final_norm", "unembed")],
    *[(r, "eps", s(-1, "-alpha", 0, 0)) for r in HIDDEN + ["bias", "norm"]],
    ("qk_norm", "eps", s(0, "-alpha", 0, 0)),  # design.md, Additions: QK-norm gains follow the block rule
    *[(r, "eps", s(0, 0, 0, 0)) for r in ("embed", "unembed", "final_norm")],
    *[(r, "weight_decay", s(1, 0, 0, 0)) for r in HIDDEN],
    *[(r, "weight_decay", s(0, 0, 0, 0)) for r in ("embed", "unembed", "norm", "final_norm")],
]

# muP, Table 8 form (as the `mup` package): hidden var 1/fan_in, lr 1/m_N, coupled wd m_N; output mult 1/m_N.
MUP = [
    *[(r, "var", s(-1, 0, 0, 0)) for r in HIDDEN],
    *[(r, "lr", s(-1, 0, 0, 0)) for r in HIDDEN],
    *[(r, "weight_decay", s(1, 0, 0, 0)) for r in HIDDEN],
    ("output.mult", "site", s(-1, 0, 0, 0)),
    *[
        (r, k, s(0, 0, 0, 0))
        for r in ("embed", "bias", "norm", "final_norm", "unembed")
        for k in ("var", "lr", "weight_decay", "eps")
    ],
    *[(r, "eps", s(0, 0, 0, 0)) for r in HIDDEN],
    ("residual.attn", "site", s(0, 0, 0, 0)),
]


def _check_table(name, expected):
    table = exponent_table(scalec.load(name).ir)
    for role, hp, want in expected:
        got = var(table, role) if hp == "var" else cell(table, role, hp)
        assert got == want, f"{name}: {role} {hp}: got {got}, design.md says {want}"


@pytest.mark.slow
def test_completedp_reproduces_design_table_cell_by_cell():
    _check_table("completedp", COMPLETEDP)


def test_completep_reproduces_design_table_cell_by_cell():
    _check_table("completep", COMPLETEP)


def test_mup_reproduces_table8_form():
    _check_table("mup", MUP)


def test_depth_mup_is_completep_with_alpha_half():
    dm, cp = scalec.load("depth_mup"), scalec.load("completep", params={"alpha": "1/2"})
    shape = dm.shape(n=512, L=16)
    for role in dm.module.ROLES:
        assert astuple(dm.role_hparams(role, shape)) == astuple(cp.role_hparams(role, shape))
    assert dm.sites(shape).as_dict() == cp.sites(shape).as_dict()
    assert dm.sites(shape).residual_attn == pytest.approx(8**-0.5)


def test_sp_scales_nothing():
    table = exponent_table(scalec.load("sp").ir)
    for row in table.rows:
        if row.subject == "training" or row.subject == "attn.scale":
            continue
        assert all(v == 0 for v in row.exponents.values()), row


@pytest.mark.parametrize("name", BUNDLED)
def test_every_bundled_rule_is_identity_at_base(name):
    p = scalec.load(name)
    check_identity_at_base(p.ir)  # raises on failure
    base = p.module.BASE
    root = scalec.load("sp")
    for role in p.module.ROLES:
        got, want = p.role_hparams(role, base), root.role_hparams(role, base)
        for kind in ("init_std", "lr", "weight_decay", "beta1", "beta2", "eps", "mult"):
            assert getattr(got, kind) == pytest.approx(getattr(want, kind), rel=1e-12), (name, role, kind)


@pytest.mark.parametrize("name", BUNDLED)
def test_every_bundled_rule_has_a_citation_and_checks_clean(name):
    p = scalec.load(name)
    assert p.ir.cites and p.ir.docs
    assert not [w for w in p.report.warnings if "domain" in w and "hp search" not in w]


def test_mup_table3_and_table8_are_equivalent_under_abc_symmetry():
    e = equivalence(scalec.load("mup"), scalec.load("mup_table3"))
    assert e.equivalent, e.differences


def test_sp_and_mup_are_not_equivalent():
    e = equivalence(scalec.load("sp"), scalec.load("mup"))
    assert not e.equivalent
    # One line per way of differing, the seven hidden matrices merged, saying what the symmetry would need.
    assert any(
        d.startswith("hidden along m_N: lr x m_N^-1") and "init_std x m_N^-1 (has m_N^-1/2)" in d for d in e.differences
    ), e.differences
    assert not e.up_to_eps


@pytest.mark.slow
def test_completep_and_completedp_differ_only_beyond_the_symmetry():
    e = equivalence(scalec.load("completep"), scalec.load("completedp"))
    assert not e.equivalent
    assert any("m_B" in d or "beta" in d for d in e.differences)


def test_width_verdicts_classify_sp_and_mup():
    sp, mup = desiderata(scalec.load("sp")), desiderata(scalec.load("mup"))
    assert sp.width_class.startswith("SP-like") and sp.failed("width")
    assert any(
        "hidden" not in v.message and "lr width exponent 0: updates grow as width^1; needs -1" in v.message
        for v in sp.failed("width")
    )
    assert mup.width_class.startswith("muP-like") and not mup.failed("width")
    assert mup.r == 0


@pytest.mark.slow
def test_depth_verdicts_only_alpha_one_is_complete():
    classes = {n: desiderata(scalec.load(n)).depth_class for n in ("mup", "depth_mup", "completep", "completedp")}
    assert classes["mup"] == "no depth scaling"
    assert classes["depth_mup"].startswith("depth-muP")
    assert "complete feature learning" in classes["completep"]
    assert "complete feature learning" in classes["completedp"]
    assert "complete" not in classes["depth_mup"].replace("incomplete", "")
    assert desiderata(scalec.load("mup")).failed("depth")
    assert not desiderata(scalec.load("completep")).failed("depth")
    assert not desiderata(scalec.load("depth_mup")).failed("depth")


def test_batch_duration_verdicts():
    cdp, cp = desiderata(scalec.load("completedp")), desiderata(scalec.load("completep"))
    assert cdp.passes("batch") and cdp.passes("duration")
    assert cp.failed("batch") and cp.failed("duration")


@pytest.mark.slow
def test_exponents_are_exact_fractions():
    row = exponent_table(scalec.load("completedp").ir).get("attn.q", "eps")
    assert row.exponents == {"n": F(-1), "L": F(-1), "B": F(-1, 2), "D": F(1, 2)}
