"""`scalec derive`: exponents from the desiderata reproduce the papers' tables and the bundled rules."""

from __future__ import annotations

import dataclasses
import math
from fractions import Fraction as F
from pathlib import Path

import pytest
import sympy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import scalec
from scalec.cli import app
from scalec.compiler.analysis import equivalence
from scalec.compiler.derive import DeriveError, DeriveSpec, derive
from scalec.compiler.derive_emit import derive_file
from scalec.compiler.exact_lp import Infeasible, minimise
from scalec.compiler.parameterisation import compile_ir

HALF = sympy.Rational(1, 2)
KINDS = ("init_std", "lr", "weight_decay", "eps", "mult", "beta1", "beta2", "momentum")
HIDDEN = ("attn.q", "attn.k", "attn.v", "attn.o", "mlp.up", "mlp.gate", "mlp.down")
WIDTH = [dict(n=32), dict(n=512), dict(n=4096)]
ALL = [*WIDTH, dict(L=16), dict(B=2**14), dict(D=2**26), dict(n=64, L=8, B=2**10, D=2**20), dict(d_head=64)]


def derived(tmp_path: Path, spec: DeriveSpec, params=None):
    path = tmp_path / f"{spec.name.lower()}.scale"
    path.write_text(derive_file(spec))
    return scalec.load(str(path), params=params)


def mismatches(p, q, shapes, relative=False):
    """(shape, role, kind, p value, q value) wherever p and q differ; relative: compare value / value at base."""
    out = []
    for axes in shapes:
        sp, sq, bp, bq = p.shape(**axes), q.shape(**axes), p.shape(), q.shape()
        for role in q.module.ROLES:
            hp, hq = p.role_hparams(role, sp), q.role_hparams(role, sq)
            h0p, h0q = p.role_hparams(role, bp), q.role_hparams(role, bq)
            for kind in KINDS:
                vp, vq = getattr(hp, kind), getattr(hq, kind)
                if vp is None and vq is None:
                    continue
                if relative and vp is not None and vq is not None:
                    vp = vp / getattr(h0p, kind) if getattr(h0p, kind) else vp
                    vq = vq / getattr(h0q, kind) if getattr(h0q, kind) else vq
                if vp is None or vq is None or not math.isclose(vp, vq, rel_tol=1e-12, abs_tol=1e-300):
                    out.append((axes, role, kind, vp, vq))
        if not relative and dataclasses.astuple(p.sites(sp)) != dataclasses.astuple(q.sites(sq)):
            out.append((axes, "sites", p.sites(sp), q.sites(sq)))
    return out


@pytest.mark.parametrize(
    ("bundled", "spec", "params"),
    [
        ("mup_table3", DeriveSpec(axes=("width",), gauge="table3"), None),
        ("mup", DeriveSpec(axes=("width",), gauge="mup"), None),
        ("completep", DeriveSpec(axes=("width", "depth"), gauge="mup", eps="blocks"), None),
        ("completep", DeriveSpec(axes=("width", "depth"), gauge="mup", eps="blocks"), {"alpha": "1/2"}),
        ("depth_mup", DeriveSpec(axes=("width", "depth"), gauge="mup", eps="blocks", alpha=(HALF, HALF)), None),
    ],
    ids=["mup_table3", "mup", "completep_alpha1", "completep_alpha_half", "depth_mup"],
)
def test_derive_reproduces_bundled_rule_value_for_value(tmp_path, bundled, spec, params):
    d, b = derived(tmp_path, spec, params), scalec.load(bundled, params=params)
    assert mismatches(d, b, ALL) == []
    assert equivalence(d, b).equivalent, equivalence(d, b).differences


def test_derive_sgd_reproduces_tp5_sgd_column_and_mup_sgd(tmp_path):
    d, b = derived(tmp_path, DeriveSpec(axes=("width",), optimizer="sgd")), scalec.load("mup_sgd")
    hp = b.hparams()  # the bundled file's own defaults for sgd_ratio and mu, given to both
    assert mismatches(d, b, ALL) == []
    assert equivalence(d, b).equivalent, equivalence(d, b).differences
    # TP5 Table 3, SGD column, by hand: vector-like lr x width, hidden lr x 1, readout lr / width, init var 1/n^2.
    s, s0 = d.shape(n=1024), d.shape()
    ratio = {r: d.role_hparams(r, s, hp).lr / d.role_hparams(r, s0, hp).lr for r in ("embed", "attn.q", "unembed")}
    assert ratio == {"embed": 8.0, "attn.q": 1.0, "unembed": 1 / 8}
    # The QK-norm gain is a d_head-long vector: vector-like along the head dimension (the `mup` package's MuSGD).
    q = d.role_hparams("qk_norm", d.shape(d_head=128), hp).lr / d.role_hparams("qk_norm", s0, hp).lr
    assert q == 4.0


def test_derive_muon_reproduces_muon_width_rules(tmp_path):
    spec = DeriveSpec(axes=("width", "depth"), optimizer="muon", gauge="mup", eps="blocks")
    d, b = derived(tmp_path, spec), scalec.load("muon")
    assert mismatches(d, b, WIDTH) == []
    assert d.role_hparams("mlp.up", d.shape()).optimizer == "muon"


def test_derive_unit_gauge_matches_umup_width_exponents(tmp_path):
    """u-muP's width part: unit init, multipliers fan_in^-1/2 (hidden) and 1/fan_in (readout), Adam lr fan_in^-1/2,
    independent decay.  umup's base values differ from SP's (unit init), so values are compared relative to base."""
    spec = DeriveSpec(axes=("width",), gauge="unit", eps="fixed", decay="independent")
    d, b = derived(tmp_path, spec), scalec.load("umup")
    assert [m for m in mismatches(d, b, WIDTH, relative=True) if m[1] != "embed" or m[2] != "lr"] == []
    sd, sb = d.shape(n=1024), b.shape(n=1024)
    # By hand: the readout's multiplier 1/fan_in falls 8x from n = 128 to 1024 in both.
    assert d.role_hparams("unembed", sd).mult / d.role_hparams("unembed", d.shape()).mult == 1 / 8
    assert b.role_hparams("unembed", sb).mult / b.role_hparams("unembed", b.shape()).mult == 1 / 8


def test_derive_completedp_batch_and_duration_factors(tmp_path):
    spec = DeriveSpec(axes=("width", "depth", "batch", "duration"), gauge="table3", eps="gradient")
    d, b = derived(tmp_path, spec), scalec.load("completedp")
    shapes = [dict(B=2**14), dict(D=2**26), dict(B=2**10, D=2**20), dict(B=2**16, D=2**30)]
    assert mismatches(d, b, shapes, relative=True) == []


def test_derive_batch_duration_exponents_are_complete_d_p_table_1():
    """Complete(d)P Table 1 (arXiv 2512.22382), transcribed by hand: exponents of m_B and m_D on every role."""
    table = {
        "lr": (F(1, 2), F(-1, 2)),
        "eps": (F(-1, 2), F(1, 2)),
        "weight_decay": (F(1, 2), F(-1, 2)),
        "1-beta1": (F(1), F(-1)),
        "1-beta2": (F(1), F(-1)),
    }
    d = derive(DeriveSpec(axes=("batch", "duration")))
    for re in d.roles:
        got = {k: (F(str(e.get("B", 0))), F(str(e.get("D", 0)))) for k, e in re.exps.items()}
        assert got == table, re.spec.name


def test_derive_width_exponents_are_tp5_table_3():
    """TP5 Table 3 (Adam), by hand: hidden init var n^-1, lr n^-1; readout init var n^-2, lr n^-1; rest unscaled."""
    d = derive(DeriveSpec(axes=("width",), gauge="table3"))
    got = {re.spec.name: {k: e.get("n") for k, e in re.exps.items() if k in ("init_std", "lr")} for re in d.roles}
    for r in HIDDEN:
        assert got[r] == {"init_std": -HALF, "lr": -1}
    assert got["unembed"] == {"init_std": -1, "lr": -1}
    assert all(got[r] == {} for r in ("embed", "norm", "qk_norm", "bias", "final_norm"))


def test_readout_needs_a_plus_b_at_least_one_not_one_half():
    """TP4 Thm 3.3: a+b+r >= 1 with r = 0 binds the readout at a+b = 1 (the init condition alone gives 1/2)."""
    d = derive(DeriveSpec(axes=("width",)))
    assert d.invariants["unembed"] == (1, 1)


def test_depth_gamma_is_one_minus_alpha_for_adam_and_one_minus_two_alpha_for_sgd():
    a = sympy.Symbol("alpha", real=True)
    d = derive(DeriveSpec(axes=("depth",)))
    assert sympy.simplify(d.depth_gamma[1] - (1 - a)) == 0
    assert sympy.simplify(d.depth_gamma[2] - (1 - 2 * a)) == 0


def test_infeasible_alpha_names_the_conflicting_constraints():
    with pytest.raises(DeriveError) as err:
        derive(DeriveSpec(axes=("width", "depth"), alpha=(sympy.Integer(2),) * 2))
    msg = str(err.value)
    assert "\n" not in msg and "infeasible" in msg and "alpha <= 1" in msg and "alpha = 2" in msg
    assert "alpha >= 1/2" not in msg  # only the constraints that conflict


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        (DeriveSpec(axes=("width", "batch"), optimizer="muon"), "AdamW only"),
        (DeriveSpec(gauge="foo"), "unknown gauge 'foo'"),
        (DeriveSpec(axes=("height",)), "unknown axis 'height'"),
    ],
)
def test_derive_refuses_bad_input_in_one_line(spec, words):
    with pytest.raises(DeriveError) as err:
        derive(spec)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_exact_lp_hand_solved_problems():
    # min x + y  s.t. x >= 1, y >= 2, x + y >= 4  ->  4
    value, x = minimise([F(1), F(1)], [([1, 0], ">=", 1), ([0, 1], ">=", 2), ([1, 1], ">=", 4)])
    assert value == 4 and x[0] >= 1 and x[1] >= 2
    # free variables may go negative: min x s.t. x >= -3/2  ->  -3/2
    assert minimise([F(1)], [([1], ">=", F(-3, 2))]) == (F(-3, 2), [F(-3, 2)])
    with pytest.raises(Infeasible):
        minimise([F(0)], [([1], "<=", 1), ([1], ">=", 2)])
    # a degenerate system of the shape derive solves (sympy's linprog returned an infeasible point for it)
    value, x = minimise(
        [F(1), F(1), F(0)],
        [
            ([1, 0, 0], ">=", -1),
            ([0, 1, 0], ">=", 0),
            ([0, 1, 1], ">=", 1),
            ([1, 0, 1], ">=", 0),
            ([0, 0, 1], ">=", F(1, 2)),
        ],
    )
    assert value == -1 and x[:2] == [F(-1), F(0)]


def test_derive_is_deterministic():
    spec = DeriveSpec(axes=("width", "depth", "batch", "duration"), gauge="mup", eps="blocks")
    assert derive_file(spec) == derive_file(spec)


def test_derive_cli_writes_a_file_that_checks(tmp_path):
    out = tmp_path / "cp.scale"
    r = CliRunner().invoke(
        app, ["derive", "--axes", "width,depth", "--gauge", "mup", "--eps", "blocks", "-o", str(out)]
    )
    assert r.exit_code == 0, r.output
    ir, _ = compile_ir(out)
    assert ir.name == "Derived"
    r = CliRunner().invoke(app, ["derive", "--axes", "width,depth", "--param", "alpha=3"])
    assert r.exit_code == 1 and "infeasible" in r.output


@pytest.mark.slow
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    axes=st.sets(st.sampled_from(["width", "depth", "batch", "duration"]), min_size=1),
    optimizer=st.sampled_from(["adamw", "sgd", "muon"]),
    gauge=st.sampled_from(["table3", "mup", "unit"]),
    eps=st.sampled_from(["symmetry", "fixed", "gradient", "blocks"]),
    decay=st.sampled_from(["coupled", "independent"]),
    alpha=st.sampled_from([None, "1/2", "3/4", "1"]),
)
def test_derived_files_always_pass_check(tmp_path, axes, optimizer, gauge, eps, decay, alpha):
    order = [a for a in ("width", "depth", "batch", "duration") if a in axes]
    if optimizer != "adamw" and {"batch", "duration"} & axes:
        order = [a for a in order if a in ("width", "depth")] or ["width"]
    pin = (sympy.Rational(alpha),) * 2 if alpha else (HALF, sympy.Integer(1))
    spec = DeriveSpec(axes=tuple(order), optimizer=optimizer, gauge=gauge, eps=eps, decay=decay, alpha=pin)
    path = tmp_path / "d.scale"
    path.write_text(derive_file(spec))  # derive_file itself refuses output that fails the compiler's checks
    ir, report = compile_ir(path)
    assert ir.name == "Derived"


MOE = """parameterisation MoE extends CompleteP
  "CompleteP with an MoE router in every block and a conv stem."
  new role router: readout in blocks
  new role stem: hidden
"""


def test_derive_extends_gives_declared_roles_their_derived_exponents(tmp_path):
    """By hand (TP4 Thm 3.3, TP5 Table 3, CompleteP): a readout in the blocks under the mup gauge takes the multiplier
    1/m_N, an unscaled init and lr times m_L^(alpha-1); its gradient (eps) ~ m_N^-1 m_L^-alpha.  A hidden stem outside
    the blocks: init var 1/m_N, lr 1/m_N, no depth factor."""
    from scalec.compiler.derive_extends import derive_extends

    (tmp_path / "moe.scale").write_text(MOE)
    spec = DeriveSpec(axes=("width", "depth"), gauge="mup", eps="blocks", name="MoEDerived")
    (tmp_path / "moe_derived.scale").write_text(derive_extends(tmp_path / "moe.scale", spec))
    p = scalec.load(str(tmp_path / "moe_derived.scale"))
    s0, s = p.shape(), p.shape(n=1024, L=16)  # m_N = 8, m_L = 8
    r = {
        k: getattr(p.role_hparams("router", s), k) / getattr(p.role_hparams("router", s0), k)
        for k in ("mult", "init_std", "lr", "eps")
    }
    assert r == pytest.approx({"mult": 1 / 8, "init_std": 1.0, "lr": 1.0, "eps": 1 / 64})  # alpha = 1
    st_ = {
        k: getattr(p.role_hparams("stem", s), k) / getattr(p.role_hparams("stem", s0), k) for k in ("init_std", "lr")
    }
    assert st_ == pytest.approx({"init_std": 8**-0.5, "lr": 1 / 8})
    assert "router" in (tmp_path / "moe_derived.scale").read_text()


def test_derive_extends_refuses_a_file_without_declared_roles(tmp_path):
    from scalec.compiler.derive_extends import derive_extends

    (tmp_path / "plain.scale").write_text('parameterisation Plain extends muP\n  "nothing new"\n')
    with pytest.raises(DeriveError, match="declares no role"):
        derive_extends(tmp_path / "plain.scale", DeriveSpec())


def test_derive_extends_file_name_cannot_inject_rules(tmp_path):
    """A newline in the parent's file name stays inside the header comment (never a statement of the output)."""
    from scalec.compiler.derive_extends import derive_extends

    parent = tmp_path / "moe\nrole embed: lr *= 1000.scale"
    parent.write_text(MOE)
    text = derive_extends(parent, DeriveSpec(axes=("width",), gauge="mup", name="Safe"))
    assert not any(line.startswith("role embed") for line in text.splitlines())
