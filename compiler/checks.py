"""Static checks on the IR: identity at the base shape, and HP domains (the feasible region, compiler/region.py)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import sympy

from scalec.compiler import profile
from scalec.compiler.analysis import desiderata
from scalec.compiler.expectations import ExpectationResult, judge
from scalec.compiler.ir import ParameterisationIR, Quantity, Rule
from scalec.compiler.region import check_base_in_region, derive_region, error_at, tensor_corners
from scalec.compiler.symbols import BASE, LAYER, ONES, TENSOR, hp_symbol
from scalec.dsl.errors import RuleError


@dataclass
class CheckReport:
    """What `scalec check` found: errors raise; warnings, the desiderata's classes and failures and the file's
    expectations (compiler/expectations.py) are collected here as plain data."""

    name: str
    warnings: list[str] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)
    width_class: str = ""
    depth_class: str = ""
    failures: list[str] = field(default_factory=list)  # one line per failed desideratum, roles merged
    expectations: list[ExpectationResult] = field(default_factory=list)

    @property
    def broken(self) -> list[ExpectationResult]:
        """The expectations that do not hold (`scalec check` exits 1 when there are any)."""
        return [e for e in self.expectations if not e.holds]


def _base_values(ir: ParameterisationIR) -> dict[sympy.Symbol, sympy.Rational]:
    return {BASE[a]: q.value for a, q in ir.axes.items()}


def check_identity_at_base(ir: ParameterisationIR, warnings: list[str] | None = None) -> None:
    """At m_N = m_L = m_B = m_D = 1 every rule must return the root file's base value.

    Weight decay is compared as the coupled (torch) value wd/lr when a role's decay is independent, and by value
    at the default HPs when symbols differ (a file may re-base it on a new hp such as `lambda_ind`). A role whose
    optimizer differs from the root's has no root value to return: its base values must only not depend on
    the base shape (n0, L0, ...). Fans are the same symbols on both sides; depth profiles take every knot at its
    default (then every block has the default value); other rules in the block index l are reported in `warnings`
    instead."""
    warnings = [] if warnings is None else warnings
    subs = dict(ONES)
    defaults = _hp_defaults(ir)
    for role, rules in ir.roles.items():
        same_optimizer = ir.optimizer(role) == ir.root_settings.get(role, {}).get("optimizer", "adamw")
        for kind, rule in rules.items():
            rule = Rule(profile.at_defaults(rule.expr, ir.profiles), rule.origins)  # every knot at its default
            if LAYER in rule.expr.free_symbols:
                # A per-layer profile (e.g. (1 + l) / L) is by design not 1 at every block of the base shape.
                note = f"{kind} depends on the block index l (a per-block profile): not checked for identity at base"
                if note not in warnings:
                    warnings.append(note)
                continue
            root = ir.root_roles.get(role, {}).get(kind)  # a role declared below the root has no root value
            root = Rule(profile.at_defaults(root.expr, ir.profiles), root.origins) if root is not None else None
            if rule.expr.free_symbols & TENSOR or (root is not None and root.expr.free_symbols & TENSOR):
                # fans at the base shape: the bundled GPT's (fan_in = n0 for hidden matrices, the vocabulary...)
                base = _base_values(ir)
                rule = Rule(tensor_corners(rule.expr, role, ir.fans(role))[0].subs(base), rule.origins)
                root = (
                    Rule(tensor_corners(root.expr, role, ir.fans(role))[0].subs(base), root.origins)
                    if root is not None
                    else None
                )
            if not same_optimizer or root is None:
                _free_of_base(ir, rule, subs, f"{kind} of role '{role}'")
                continue
            if kind == "weight_decay":
                here = _coupled(rule.expr, rules, ir.decay(role))
                there = _coupled(root.expr, ir.root_roles[role], ir.root_settings.get(role, {}).get("decay", "coupled"))
                if _equal_at(here, there, subs) or _equal_at(here, there, {**subs, **defaults}):
                    continue
                rule = Rule(here, rule.origins)
                root = Rule(there, root.origins)
            _same_at_base(ir, rule, root, subs, f"{kind} of role '{role}'")
    for site, rule in ir.sites.items():
        _same_at_base(ir, rule, ir.root_sites[site], subs, f"site '{site}'")


def _hp_defaults(ir: ParameterisationIR) -> dict:
    return {hp_symbol(k, q.low): q.value for k, q in ir.hps.items()}


def _coupled(wd: sympy.Expr, rules: dict[str, Rule], decay: str) -> sympy.Expr:
    """A weight decay in the coupled (torch) convention: independent wd / lr."""
    return wd / rules["lr"].expr if decay == "independent" else wd


def _equal_at(a: sympy.Expr, b: sympy.Expr, subs) -> bool:
    diff = sympy.expand(a.subs(subs) - b.subs(subs))
    return _is_zero(diff)


def _is_zero(diff: sympy.Expr) -> bool:
    """Exactly zero. `cancel` is canonical for rational functions (zero iff the numerator is), so only other
    expressions (non-integer powers, functions) reach the slow `simplify`."""
    if diff == 0 or sympy.cancel(diff) == 0:
        return True
    return False if diff.is_rational_function() else sympy.simplify(diff) == 0


def _free_of_base(ir, rule: Rule, subs, what: str) -> None:
    here = rule.expr.subs(subs)
    shape = sorted(str(s) for s in here.free_symbols if s in set(BASE.values()))
    if shape:
        raise error_at(
            ir,
            rule.origins,
            f"{what} depends on the base shape ({', '.join(shape)}) at m_N = m_L = m_B = m_D = 1: gives {here}",
            "write scaling with the ratios m_N, m_L, m_B, m_D (e.g. m_N^-1, not 1/n)",
        )


def _same_at_base(ir, rule: Rule, root: Rule, subs, what: str) -> None:
    here, there = rule.expr.subs(subs), root.expr.subs(subs)
    if not _is_zero(sympy.expand(here - there)):
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
    check_identity_at_base(ir, report.warnings)
    report.checked.append("identity at base")
    check_domains(ir, report)
    check_desiderata(ir, report)
    return report


def check_desiderata(ir: ParameterisationIR, report: CheckReport) -> None:
    """The desiderata (compiler/analysis.py): classes, every failure as a line, and the file's expectations."""
    d = desiderata(ir)
    report.width_class, report.depth_class = d.width_class, d.depth_class
    report.failures = d.failure_lines()
    report.expectations = judge(ir, d)
    report.checked.append("desiderata")
