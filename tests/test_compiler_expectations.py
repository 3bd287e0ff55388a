"""`expect AREA: LEVEL`: parsing, inheritance, `scalec check` exit codes and lines, and the perturbation property."""

from __future__ import annotations

import copy
import dataclasses
import functools
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import scalec
from scalec.cli import app
from scalec.compiler.analysis import desiderata, equivalence
from scalec.compiler.expectations import LEVELS, judge
from scalec.compiler.ir import Rule
from scalec.compiler.parameterisation import compile_ir
from scalec.compiler.symbols import RATIO
from scalec.dsl.errors import RuleError
from scalec.dsl.formatter import format_file
from scalec.dsl.parser import parse

DECLARED = {
    "mup": {"width": "mup_like", "eps": "bounded"},
    "mup_table3": {"width": "mup_like", "eps": "bounded"},
    "mup_sgd": {"width": "mup_like"},
    "umup": {"width": "stable"},  # u-muP's embedding lr fan_out^-1/2 is stable, not maximal
    "completep": {"width": "mup_like", "depth": "complete", "eps": "bounded"},
    "depth_mup": {"width": "mup_like", "depth": "maximal", "eps": "bounded"},  # alpha = 1/2 is not complete
    "muon": {"width": "mup_like", "depth": "complete", "eps": "bounded"},
    "completedp_halflife": {
        "width": "mup_like",
        "depth": "complete",
        "batch": "sde",
        "duration": "sde",
        "eps": "tracks_gradient",
    },  # all inherited
    "completedp": {  # restates eps: tracks_gradient
        "width": "mup_like",
        "depth": "complete",
        "batch": "sde",
        "duration": "sde",
        "eps": "tracks_gradient",
    },
}


@pytest.mark.parametrize("name", sorted(DECLARED))
def test_bundled_rules_declare_and_inherit_their_expectations_and_meet_them(name):
    ir, report = compile_ir(name)
    assert {a: e.level for a, e in ir.expectations.items()} == DECLARED[name]
    assert report.expectations and not report.broken, [e.broken for e in report.broken]


def test_expect_round_trips_through_fmt_and_keeps_positions():
    src = "parameterisation X extends muP\n  expect width: mup_like;  depth: stable\n"
    f = parse(src, "x.scale")
    assert format_file(f) == src
    items = f.statements[0].items
    assert [(e.area, e.level, e.loc.line, e.loc.col) for e in items] == [
        ("width", "mup_like", 2, 10),
        ("depth", "stable", 2, 28),
    ]


@pytest.mark.parametrize(
    "line, message, hint",
    [
        ("expect widht: mup_like", "unknown expectation area 'widht'", "did you mean 'width'?"),
        ("expect depth: compelte", "unknown depth level 'compelte'", "did you mean 'complete'?"),
        ("expect width: stable;  width: mup_like", "duplicate definition of expectation 'width'", None),
    ],
)
def test_a_malformed_expectation_is_a_located_error(write_rule, line, message, hint):
    path = write_rule("bad", f"parameterisation X extends muP\n  {line}\n")
    with pytest.raises(RuleError) as info:
        scalec.load(path)
    assert info.value.loc.line == 2 and message in info.value.message
    assert hint is None or hint in info.value.hint


def test_check_exits_1_with_one_line_per_broken_condition(write_rule):
    # CompleteP plus `batch: sde` without any batch rule: the square-root rule is broken (lr m_B^0, needs 1/2).
    path = write_rule("nobatch", "parameterisation X extends CompleteP\n  expect batch: sde\n")
    out = CliRunner().invoke(app, ["check", str(path)], env={"COLUMNS": "400"})
    assert out.exit_code == 1
    broken = [line for line in out.output.splitlines() if line.startswith("  broken: ")]
    assert broken == ["  broken: nobatch.scale:2: expect batch: sde: all roles, lr: m_B^0, needs = 1/2 [SDE "
                      "square-root rule (Malladi et al. 2022; Complete(d)P, arXiv 2512.22382)]"]  # fmt: skip
    ok = CliRunner().invoke(app, ["check", "completedp"], env={"COLUMNS": "400"})
    assert ok.exit_code == 0 and "expect " in ok.output and "holds" in ok.output


def test_a_child_restates_an_area(write_rule):
    # depth_mup restates depth: maximal; a child of it may demand complete and then breaks (alpha = 1/2).
    path = write_rule("strict", "parameterisation Strict extends depth_muP\n  expect depth: complete\n")
    _, report = compile_ir(str(path))
    (broken,) = report.broken
    assert broken.area == "depth" and broken.where == "strict.scale:2"
    assert broken.broken[0].startswith("site residual: alpha = 1/2, needs 1")


def test_check_results_are_plain_data():
    _, report = compile_ir("completedp")
    assert all(dataclasses.is_dataclass(e) for e in report.expectations)
    assert copy.deepcopy(report.expectations) == report.expectations
    assert {e.area for e in report.expectations} == set(DECLARED["completedp"])


# ---- perturbation property ---------------------------------------------------------------------------------
# Perturbing one exponent of a bundled rule (one role's target, or a forward site, along one axis its expectations
# cover) either breaks one of its expectations or is proved equivalent by the abc-symmetry.  Exceptions, where the
# authorities leave the exponent open: eps along width (the `mup` package scales none, Complete(d)P Eq. 40 tracks
# the gradient; `eps: bounded` allows either, only `eps: tracks_gradient` pins it, for the roles it judges) and
# Muon's eps (it only guards the orthogonalisation).
_AXIS = {"width": "n", "depth": "L", "batch": "B", "duration": "D"}
_ONE_MINUS = {"beta1", "beta2", "momentum"}


@functools.cache
def _bundled(name: str):
    return compile_ir(name)[0]


def _open(ir, role: str, kind: str, axis: str) -> bool:
    width = ir.expectations.get("width")
    if axis == "n" and width is not None and width.level == "stable":
        return True  # `width: stable` is one-sided: a smaller lr or init along width keeps it (uMuP_rules)
    if kind != "eps":
        return False
    if ir.optimizer(role) == "muon":
        return True
    tracked = "eps" in ir.expectations and any(v.role == role and v.area == "eps" for v in desiderata(ir).verdicts)
    # `eps: bounded` allows any eps from the gradient's scale up to m_N^1 above it: a smaller eps along width keeps it
    return axis == "n" and (not tracked or ir.expectations["eps"].level != "tracks_gradient")


def _perturb(ir, subject: str, kind: str, axis: str, delta: Fraction):
    new = copy.copy(ir)
    new.roles = {r: dict(k) for r, k in ir.roles.items()}
    new.sites = dict(ir.sites)
    factor = RATIO[axis] ** delta
    if kind == "site":
        new.sites[subject] = Rule(ir.sites[subject].expr * factor, ())
    else:
        e = ir.roles[subject][kind].expr
        new.roles[subject][kind] = Rule(1 - (1 - e) * factor if kind in _ONE_MINUS else e * factor, ())
    return new


@st.composite
def _perturbations(draw):
    name = draw(st.sampled_from(sorted(DECLARED)))
    ir = _bundled(name)
    axis = draw(st.sampled_from(sorted({_AXIS[a] for a in ir.expectations if a in _AXIS})))
    subjects = [(r, k) for r, rules in ir.roles.items() for k in rules if k not in ("init_mean", "ns_steps")]
    subjects += [(s, "site") for s in ("residual.attn", "residual.mlp", "output.mult", "embed.mult")]
    subject, kind = draw(st.sampled_from(subjects))
    delta = draw(st.sampled_from([Fraction(-1), Fraction(-1, 2), Fraction(1, 2), Fraction(1)]))
    return name, subject, kind, axis, delta


@pytest.mark.slow
@settings(max_examples=40, deadline=None)
@given(_perturbations())
def test_perturbing_an_exponent_breaks_an_expectation_or_is_equivalent(case):
    name, subject, kind, axis, delta = case
    ir = _bundled(name)
    if kind != "site" and _open(ir, subject, kind, axis):
        return
    moved = _perturb(ir, subject, kind, axis, delta)
    broken = [e for e in judge(moved, desiderata(moved)) if not e.holds]
    assert broken or equivalence(ir, moved).equivalent, (name, subject, kind, axis, delta)


def test_each_level_names_the_areas_it_judges():
    assert LEVELS["width"]["mup_like"].areas == ("width", "weight_decay")
    assert all(level.doc for levels in LEVELS.values() for level in levels.values())
