"""Static checks on the IR: identity at the base shape, and HP domains (the feasible region, compiler/region.py)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import sympy

from scalec.compiler.ir import ParameterisationIR, Quantity, Rule
from scalec.compiler.region import check_base_in_region, derive_region, error_at
from scalec.compiler.symbols import ONES
from scalec.dsl.errors import RuleError


@dataclass
class CheckReport:
    """What `scalec check` found: errors raise, warnings are collected here."""

    name: str
    warnings: list[str] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)


def check_identity_at_base(ir: ParameterisationIR) -> None:
    """At m_N = m_L = m_B = m_D = 1 every rule must return the root file's base value."""
    subs = dict(ONES)
    for role, rules in ir.roles.items():
        for kind, rule in rules.items():
            root = ir.root_roles[role][kind]
            _same_at_base(ir, rule, root, subs, f"{kind} of role '{role}'")
    for site, rule in ir.sites.items():
        _same_at_base(ir, rule, ir.root_sites[site], subs, f"site '{site}'")


def _same_at_base(ir, rule: Rule, root: Rule, subs, what: str) -> None:
    here, there = rule.expr.xreplace(subs), root.expr.xreplace(subs)
    diff = sympy.expand(here - there)
    if diff != 0 and sympy.simplify(diff) != 0:
        raise error_at(
            ir,
            rule.origins,
            f"{what} is not the identity at the base shape: gives {here} where the base is {there}",
            "scaling rules must be 1 at m_N = m_L = m_B = m_D = 1 (e.g. write m_N^-1, not 1/n)",
        )


def check_domains(ir: ParameterisationIR, report: CheckReport) -> None:
    """Derive the feasible region (compiler/region.py): constraints go into the IR, failures raise, and what
    cannot be decided (or breaks only over the hp search ranges) becomes a warning."""
    region = derive_region(ir)
    check_base_in_region(ir, region.constraints)
    ir.constraints = tuple(region.constraints)
    report.warnings.extend(region.warnings)
    _check_param_range(ir)
    report.checked.append("domains")


def _check_param_range(ir: ParameterisationIR) -> None:
    """`--param` may move a param anywhere in its declared range: the domains must hold at its ends too (the
    region itself is recompiled for the value chosen)."""
    ends = [[(k, v) for v in sorted({q.low, q.high} - {q.value})] for k, q in ir.params.items()]
    for k, v in (kv for options in ends for kv in options):
        q = ir.params[k]
        moved = dataclasses.replace(ir, params={**ir.params, k: Quantity(k, v, q.low, q.high, None, q.loc)})
        try:
            derive_region(moved)
        except RuleError as exc:
            raise RuleError(exc.loc, f"{exc.message} (with param {k} = {v})", exc.hint, exc.source) from None


def run_checks(ir: ParameterisationIR) -> CheckReport:
    """All static checks; raises RuleError on the first failure, returns warnings otherwise."""
    report = CheckReport(ir.name)
    check_identity_at_base(ir)
    report.checked.append("identity at base")
    check_domains(ir, report)
    return report
