"""The width, depth and SDE desiderata against the papers' theorems, and `scalec check` printing every failure.

Hand-derived abc exponents (a: multiplier, b: init std, c: lr, all -exponent of m_N), Tensor Programs IV
(Yang & Hu 2021, arXiv 2011.14522), Theorem 3.3: a stable abc-parametrisation needs a_1+b_1 = 0, a_l+b_l = 1/2,
a_{L+1}+b_{L+1} >= 1/2 at init, and during training r >= 0, 2a_{L+1}+c >= 1 and a_{L+1}+b_{L+1}+r >= 1;
Theorem 3.8: feature learning iff r = 0.  So a feature-learning readout needs a+b >= 1.
"""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

import scalec
from scalec.cli import app
from scalec.compiler.analysis import desiderata

MUP_HIDDEN = "role hidden: init_var *= m_N^-1;  lr *= m_N^-1;  weight_decay *= m_N"


def _readout_verdicts(d, name: str = "unembed"):
    return {v.name: v for v in d.verdicts if v.role == name and v.area == "width"}


def test_kaiming_readout_is_not_mup_like_by_tp4_theorem_3_3(write_rule):
    # Readout with Kaiming init (var 1/fan_in: b = 1/2) and no multiplier (a = 0), Adam lr 1/fan_in (c = 1): the
    # init condition a+b = 1/2 >= 1/2 holds and the readout's own update a+c = 1 holds, but TP IV Thm 3.3 needs
    # a+b+r >= 1 during training, with r = 0 (every hidden matrix at muP): 1/2 < 1, so logits blow up as
    # width^(1/2) once the features move.  Not muP-like.
    path = write_rule(
        "kaiming",
        f"""
        parameterisation KaimingReadout extends SP
          {MUP_HIDDEN}
          role unembed: init_var *= m_N^-1;  lr *= m_N^-1;  weight_decay *= m_N
        """,
    )
    d = desiderata(scalec.load(path))
    assert d.r == 0
    v = _readout_verdicts(d)
    assert v["unembed init"].passed is True  # a+b = 1/2 satisfies the condition at init
    assert v["unembed update"].passed is True  # a+c = 1
    training = v["unembed init (training)"]
    assert training.passed is False and training.is_stable is False
    assert training.exponent == "a+b+r = 1/2" and training.source.startswith("TP IV Thm 3.3")
    assert not d.width_class.startswith("muP")


@pytest.mark.parametrize(
    "readout",
    [
        "site output.mult = m_N^-1",  # Table 8 form: a = 1, b = 0
        "role unembed: init_var *= m_N^-2;  lr *= m_N^-1;  weight_decay *= m_N;  eps *= m_N",  # Table 3: a=0, b=1
    ],
    ids=["table8", "table3"],
)
def test_feature_learning_readouts_meet_tp4_training_condition(write_rule, readout):
    path = write_rule("ok", f"parameterisation Ok extends SP\n  {MUP_HIDDEN}\n  {readout}\n")
    d = desiderata(scalec.load(path))
    assert d.width_class.startswith("muP-like"), d.failure_lines()
    assert all(v.passed for v in _readout_verdicts(d).values())


def test_readout_larger_than_mup_but_stable_is_not_maximal(write_rule):
    # init var m_N^-3 (b = 3/2, a = 0): a+b+r = 3/2 >= 1 is stable (TP IV) but not muP's largest init a+b = 1.
    path = write_rule(
        "small",
        f"""
        parameterisation Small extends SP
          {MUP_HIDDEN}
          role unembed: init_var *= m_N^-3;  lr *= m_N^-1;  weight_decay *= m_N
        """,
    )
    v = _readout_verdicts(desiderata(scalec.load(path)))["unembed init (training)"]
    assert v.is_stable is True and v.passed is False


def test_r_is_the_features_exponent_and_excludes_the_readout(write_rule):
    # TP IV Def. 3.2: r measures how the features (embedding and hidden layers) move.  A Table-3 readout with an
    # unscaled Adam lr (a = 0, c = 0: a+c = 0 < 1) makes the logits' own update blow up, but the features still
    # learn at Theta(1): r = 0, and the readout's update verdict (not r) is what fails.
    path = write_rule(
        "readout_lr",
        """
        parameterisation BigReadoutLr extends muP_table3
          role unembed: lr *= m_N;  weight_decay *= m_N^-1
        """,
    )
    d = desiderata(scalec.load(path))
    assert d.r == 0
    update = _readout_verdicts(d)["unembed update"]
    assert update.passed is False and update.is_stable is False
    assert d.width_class.startswith("SP-like")


def _check(*args: str):
    return CliRunner().invoke(app, ["check", *map(str, args)], env={"COLUMNS": "400"})


def test_check_prints_the_depth_failures_its_class_refers_to(write_rule):
    path = write_rule("alpha", "parameterisation A extends CompleteP\n  site residual.attn, residual.mlp = m_L^alpha\n")
    out = _check(path)
    assert "depth: alpha=-1 (see failures)" in out.output
    # CompleteP expects `depth: complete`: broken, exit 1, one line per broken condition with its bound
    assert out.exit_code == 1
    assert (
        "broken: completep.scale:5: expect depth: complete: site residual: alpha = -1, needs in [1/2, 1]" in out.output
    )
    assert "expect depth: complete: roles hidden, bias, norm, qk_norm, lr: m_L^0, needs = alpha-1 = -2" in out.output
    # without the expectation the same failures are listed as failures
    plain = write_rule("plain", "parameterisation P extends SP\n  site residual.attn, residual.mlp = m_L^(1/4)\n")
    out = _check(plain)
    assert out.exit_code == 0
    assert "depth: alpha=-1/4 (see failures)" in out.output
    assert "fails: depth / residual: residual multiplier m_L^1/4: alpha = -1/4 outside [1/2, 1]" in out.output


def test_check_refuses_an_eps_that_swamps_the_gradient_under_mup(write_rule):
    # muP's hidden gradients scale as m_N^-1; the `mup` package keeps eps fixed (eps/gradient ~ m_N^1, the bound
    # muP's `eps: bounded` allows); eps m_N^2 outgrows the gradient as m_N^3 and Adam's update vanishes with width.
    path = write_rule("eps", "parameterisation E extends muP\n  role hidden: eps *= m_N^2\n")
    out = _check(path)
    assert out.exit_code == 1
    assert (
        "expect eps: bounded: roles hidden, eps: m_N^2 m_L^0, needs m_N^-1 m_L^0 to track the gradient, at most m_N^0"
        in out.output
    )


def test_check_refuses_a_sign_error_in_the_hidden_lr_under_mup(write_rule):
    path = write_rule("sign", "parameterisation S extends muP\n  role hidden: lr *= m_N^2\n")  # m_N^+1 in all
    out = _check(path)
    assert out.exit_code == 1
    assert out.output.startswith("FAIL")
    assert "expect width: mup_like: roles hidden, lr: lr m_N^1, needs = -1 [TP V Table 3" in out.output


def test_check_never_says_see_failures_without_listing_them(write_rule):
    alpha = write_rule("alpha", "parameterisation A extends SP\n  site residual.attn, residual.mlp = m_L^(-3/4)\n")
    small = write_rule(
        "small", f"parameterisation B extends SP\n  {MUP_HIDDEN}\n  role unembed: init_var *= m_N^-3;  lr *= m_N^-1\n"
    )
    out = _check(alpha, small, "sp", "umup")
    files, current = [], None
    for line in out.output.splitlines():
        if not line.startswith("  "):
            current = [line]
            files.append(current)
        else:
            current.append(line)
    assert sum("see failures" in f[0] for f in files) == 2
    for f in files:
        if "see failures" in f[0]:
            assert any(line.startswith(("  fails: ", "  broken: ")) for line in f[1:]), f
