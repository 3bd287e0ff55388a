"""`new role NAME: KIND [in blocks]`: default rules from the kind and placement (hand-derived from the papers), every
target, fmt round trip, the module's role table, binding, and located errors."""

from __future__ import annotations

import math

import pytest
import sympy
from typer.testing import CliRunner

import scalec
from scalec.cli import app
from scalec.compiler.analysis import role_exps
from scalec.dsl.errors import RuleError
from scalec.dsl.formatter import format_file
from scalec.dsl.parser import parse

ALPHA = sympy.Symbol("alpha", real=True)


def _exps(p, role: str, kind: str) -> tuple:
    """(m_N, m_L, m_B, m_D) exponents of one declared role's target, params at their values."""
    e = role_exps(p.ir, role, kind)
    return tuple(e[a] for a in ("n", "L", "B", "D"))


def _router(write_rule, parent: str, extra: str = ""):
    return scalec.load(
        write_rule("router", f"parameterisation R extends {parent}\n  new role router: readout in blocks\n{extra}")
    )


def test_router_under_mup_takes_the_readout_multiplier(write_rule):
    # muP, Table 8 form (the `mup` package): a readout keeps init and Adam lr unscaled and is multiplied by 1/m_N.
    p = _router(write_rule, "muP")
    assert _exps(p, "router", "mult") == (-1, 0, 0, 0)
    assert _exps(p, "router", "init_std") == (0, 0, 0, 0)
    assert _exps(p, "router", "lr") == (0, 0, 0, 0)
    assert p.ir.roles["router"]["mult"].expr == 1 / sympy.Symbol("m_N", positive=True)


def test_router_under_mup_table3_takes_init_variance_and_lr_in_width(write_rule):
    # Table 3 form: readout init variance m_N^-2 (std m_N^-1), Adam lr m_N^-1, no multiplier.
    p = _router(write_rule, "muP_table3")
    assert _exps(p, "router", "init_std") == (-1, 0, 0, 0)
    assert _exps(p, "router", "lr") == (-1, 0, 0, 0)
    assert _exps(p, "router", "mult") == (0, 0, 0, 0)


@pytest.mark.parametrize("alpha", ["1", "1/2"])
def test_router_under_completep_takes_the_in_block_depth_factors(write_rule, alpha):
    # CompleteP (Dey et al. 2025, Table 1): inside the blocks Adam lr m_L^(alpha-1) and eps m_L^-alpha; the readout's
    # width rules (muP Table 8: multiplier 1/m_N) stay.  The bundled unembed, outside the blocks, has neither.
    path = write_rule("router", "parameterisation R extends CompleteP\n  new role router: readout in blocks\n")
    p = scalec.load(path, params={"alpha": alpha})
    a = sympy.Rational(alpha)
    assert _exps(p, "router", "lr") == (0, a - 1, 0, 0)
    assert _exps(p, "router", "eps") == (0, -a, 0, 0)
    assert _exps(p, "router", "mult") == (-1, 0, 0, 0)
    assert _exps(p, "router", "init_std") == (0, 0, 0, 0)
    assert _exps(p, "unembed", "lr") == (0, 0, 0, 0)


def test_router_under_completedp_takes_the_batch_and_duration_factors_of_role_star(write_rule):
    p = _router(write_rule, "CompleteDP")
    assert _exps(p, "router", "lr") == (-1, 0, sympy.Rational(1, 2), -sympy.Rational(1, 2))
    assert _exps(p, "router", "beta1") == (0, 0, 1, -1)  # 1-beta1 m_B / m_D


def test_conv_kernel_hidden_role_reads_its_own_fan_in(write_rule):
    # u-muP: a matrix carries fan_in^-1/2 in the forward pass; a 3x3 conv kernel has fan_in = C_in * 9.
    path = write_rule("conv", "parameterisation C extends uMuP\n  new role conv: hidden in blocks\n")
    p = scalec.load(path)
    shape = p.shape(n=256)
    got = p.module.role_hparams("conv", shape, fan_in=128 * 9, fan_out=256, layer=0)
    assert math.isclose(got.mult, (128 * 9) ** -0.5)
    assert math.isclose(got.lr, p.module.HParams().eta * (128 * 9) ** -0.5 * (shape.L / p.module.BASE.L) ** -0.5)


def test_conv_stem_outside_the_blocks_under_mup_is_a_hidden_matrix_without_depth_rules(write_rule):
    # muP: hidden init variance 1/fan_in ~ m_N^-1, Adam lr m_N^-1; outside the blocks CompleteP adds no m_L factor.
    path = write_rule("stem", "parameterisation S extends CompleteP\n  new role stem: hidden\n")
    p = scalec.load(path)
    assert _exps(p, "stem", "init_std") == (-sympy.Rational(1, 2), 0, 0, 0)
    assert _exps(p, "stem", "lr") == (-1, 0, 0, 0)
    assert _exps(p, "stem", "eps") == (-1, 0, 0, 0)  # CompleteP's hidden eps m_N^-1 m_L^-alpha without the m_L


def test_declared_role_takes_every_target_and_module_multipliers(write_rule):
    text = """
    parameterisation R extends CompleteP
      new role router: readout in blocks
      role router: lr *= 1/2;  1-beta2 *= 2;  eps = eps;  weight_decay = 0;  init_var *= 4;  mult *= 2
      role attn.*, router: init_std *= 1
    """
    p = scalec.load(write_rule("r", text))
    assert "lr[router]" in p.module.HP_SPACE and "mult[router]" in p.module.HP_SPACE
    assert p.module.ROLE_KINDS["router"] == ("readout", True) and p.module.ROLES["router"] == "output"
    shape = p.shape()
    base = p.module.role_hparams("router", shape, layer=0)
    assert math.isclose(base.lr, p.module.HParams().eta / 2)
    assert math.isclose(base.beta2, 1 - 2 * (1 - 0.95))
    tuned = p.module.role_hparams("router", shape, p.module.HParams().replace(**{"lr[router]": 4.0}), layer=0)
    assert math.isclose(tuned.lr, 4 * base.lr)
    sgd = scalec.load(
        write_rule("s", "parameterisation S extends muP\n  new role gate: vector\n  role gate: optimizer = sgd\n")
    )
    assert sgd.ir.optimizer("gate") == "sgd"


def test_new_role_round_trips_through_fmt():
    src = "parameterisation R extends CompleteP\n  new role router: readout in blocks\n  new role moe.gate: vector\n"
    f = parse(src, "r.scale")
    assert format_file(f) == src
    decl = f.statements[0]
    assert (decl.name, decl.kind, decl.in_blocks, decl.loc.line, decl.loc.col) == ("router", "readout", True, 2, 12)


@pytest.mark.parametrize(
    "body, message",
    [
        ("role attn.q: lr *= m_N^-1\n  new role conv: hidden", "cannot decide lr of new role 'conv'"),
        ("new role conv: hiden", "unknown role kind 'hiden'"),
        ("new role attn.q: hidden", "role 'attn.q' already exists"),
        ("role router: lr *= 2", "unknown role or group 'router'"),
    ],
)
def test_role_errors_are_located_and_name_the_role(write_rule, body, message):
    path = write_rule("bad", f"parameterisation B extends muP\n  {body}\n")
    with pytest.raises(RuleError) as info:
        scalec.load(path)
    assert message in info.value.message
    assert info.value.loc.line == body.count("\n") + 2


def test_unknown_role_hint_says_how_to_declare_one(write_rule):
    with pytest.raises(RuleError) as info:
        scalec.load(write_rule("bad", "parameterisation B extends muP\n  role router: lr *= 2\n"))
    assert "new role router: KIND" in info.value.hint


@pytest.mark.slow
def test_show_prints_where_each_rule_of_a_declared_role_came_from(write_rule):
    path = write_rule("router", "parameterisation R extends CompleteP\n  new role router: readout in blocks\n")
    out = CliRunner().invoke(app, ["show", str(path)], env={"COLUMNS": "300"})
    assert out.exit_code == 0, out.output
    assert "new role router (readout, in blocks; " in out.output
    assert "lr: sp.scale:26 role *: lr = eta; router.scale:2 new role router: readout in blocks (lr of unembed x " in (
        out.output
    )
    assert "mult: mup.scale:9 site output.mult = m_N^-1; " in out.output


def test_a_declared_role_breaking_mup_is_named_by_check(write_rule):
    # A router with Kaiming init and no multiplier breaks TP IV Thm 3.3's a+b+r >= 1 (see test_compiler_desiderata).
    text = "parameterisation R extends muP_table3\n  new role router: readout\n  role router: init_var *= m_N\n"
    out = CliRunner().invoke(app, ["check", str(write_rule("r", text))], env={"COLUMNS": "300"})
    assert out.exit_code == 1
    assert "expect width: mup_like: role router, init_std: a+b+r = 1/2, needs >= 1" in out.output


@pytest.mark.slow
def test_declared_role_binds_by_pattern_and_plans(write_rule):
    torch = pytest.importorskip("torch")
    from scalec.runtime.plan.planner import make_plan

    class Model(torch.nn.Module):
        def __init__(self, n: int):
            super().__init__()
            self.embed = torch.nn.Embedding(16, n)
            self.router = torch.nn.Linear(n, 4, bias=False)
            self.head = torch.nn.Linear(n, 16, bias=False)

    p = scalec.load(write_rule("r", "parameterisation R extends muP_table3\n  new role router: readout in blocks\n"))
    patterns = {"embed.weight": "embed", "router.weight": "router", "head.weight": "unembed"}
    plan = make_plan(p, Model(256), shape={"n": 256}, patterns=patterns)
    entry = plan.entry("router.weight")
    assert entry.role == "router"
    assert math.isclose(entry.lr, p.module.HParams().eta / 2)  # m_N = 256 / 128: lr m_N^-1
