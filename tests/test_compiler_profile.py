"""The checker on depth profiles: identity at the base shape with every knot at its default, a profile's value is
Theta(1) on every axis (exponents and desiderata unchanged), the region knows its declared bounds."""

from __future__ import annotations

import pytest

import scalec
from scalec.compiler.analysis import desiderata, role_exps
from scalec.compiler.codegen import generate
from scalec.dsl.errors import RuleError

HEAD = 'parameterisation P extends CompleteP\n  "x"\n'


def test_identity_at_base_holds_with_every_knot_at_its_default():
    p = scalec.load("completep_profile")
    assert "identity at base" in p.report.checked
    # the profile at its defaults is 1 at every block: checked, not skipped as a per-block rule would be
    assert not any("block index l" in w for w in p.report.warnings)


def test_identity_at_base_fails_when_the_default_is_not_one(write_rule):
    path = write_rule("p", HEAD + "  hp lr_depth = 2 in [1/8, 8] log knots 3\n  role hidden: lr *= lr_depth(l)\n")
    with pytest.raises(RuleError) as info:
        scalec.load(path)
    assert info.value.headline.startswith(f"{path}:4:1: error: lr of role 'attn.q' is not the identity at the base")
    assert "gives 2*eta" in info.value.headline


def test_a_profile_is_theta_one_on_every_axis():
    prof, base = scalec.load("completep_profile"), scalec.load("completep")
    for role in ("attn.q", "mlp.down"):
        assert role_exps(prof.ir, role, "lr") == role_exps(base.ir, role, "lr")
    # CompleteP (Dey et al. 2025, Table 1): hidden lr m_N^-1 m_L^(alpha-1), alpha = 1
    assert role_exps(prof.ir, "attn.q", "lr") == {"n": -1, "L": 0, "B": 0, "D": 0, "d_head": 0}
    verdict, ref = desiderata(prof), desiderata(base)
    assert (verdict.width_class, verdict.depth_class) == (ref.width_class, ref.depth_class)


@pytest.mark.slow
@pytest.mark.parametrize(("high", "warned"), [("8", False), ("16", True)])
def test_the_region_knows_a_profiles_declared_bounds(write_rule, high, warned):
    # lr * (9 - P)/8 stays positive exactly when P < 9: proven over [1/8, 8], not over [1/8, 16]
    src = HEAD + f"  hp lr_depth = 1 in [1/8, {high}] log knots 3\n  role hidden: lr *= (9 - lr_depth(l)) / 8\n"
    p = scalec.load(write_rule("p", src))
    lr_warnings = [w for w in p.report.warnings if w.startswith("lr > 0")]
    assert bool(lr_warnings) is warned
    assert all("lr_depth(l)" in w for w in lr_warnings)


def test_a_profile_in_a_bound_of_the_region_is_refused(write_rule):
    # 1-beta1 = 0.1 * P * m_N <= 1 would bound the width by a value that differs per block
    src = HEAD + "  hp lr_depth = 1 in [1/8, 8] log knots 3\n  role hidden: 1-beta1 *= lr_depth(l) * m_N\n"
    path = write_rule("p", src)
    with pytest.raises(RuleError, match=r"p.scale:4:1: error: .*bounded \(0 <= beta1 < 1\) through a depth profile"):
        scalec.load(path)


def test_generated_module_interpolates_with_the_rule_line_commented():
    p = scalec.load("completep_profile")
    text = generate(p.ir)
    assert text == generate(scalec.load("completep_profile").ir)  # deterministic
    assert "#   completep_profile.scale:7  role hidden: lr *= lr_depth(l)" in text  # the rule-line table
    lr = "lr=hp.eta * depth_profile(hp.lr_depth, layer, BASE.L * m_L) / m_N,"
    at = text.index(lr)
    assert text[:at].rsplit("\n", 2)[-2].strip().endswith("completep.scale:11, completep_profile.scale:7")
    assert '    # completep_profile.scale:6  hp lr_depth = 1 in [1/8, 8] log knots 3\n    "lr_depth": (' in text
    hp = scalec.load("completep_profile").hparams(lr_depth_0=2, lr_depth_2=0.5)
    assert hp.lr_depth == (2.0, 1.0, 0.5)  # the knots' tuple, first block to last
    assert "def depth_profile(" not in generate(scalec.load("completep").ir)  # emitted only where a profile is used
