"""Static checks on the IR: identity at the base shape and HP domains over the declared ranges."""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass, field

import sympy

from scalec.compiler.ir import Origin, ParameterisationIR, Rule
from scalec.compiler.optimizers import DOMAINS as OPTIMIZER_DOMAINS
from scalec.compiler.symbols import BASE, FAN_IN, FAN_OUT, LAYER, ONES, RATIO, TENSOR, hp_symbol, param_symbol
from scalec.compiler.vocabulary import DEFAULT_FANS
from scalec.dsl.ast import Loc
from scalec.dsl.errors import RuleError

# Domain of each HP kind after scaling: (predicate on the value, description); one table for every optimizer.
DOMAINS = OPTIMIZER_DOMAINS


@dataclass
class CheckReport:
    """What `scalec check` found: errors raise, warnings are collected here."""

    name: str
    warnings: list[str] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)


def _error_at(ir: ParameterisationIR, origins: tuple[Origin, ...], message: str, hint: str | None) -> RuleError:
    if origins:
        o = origins[-1]
        idx = ir.paths.index(o.path) if o.path in ir.paths else -1
        source = ir.sources[idx] if idx >= 0 else None
        return RuleError(Loc(o.path, o.line, 1), message, hint, source)
    return RuleError(ir.header_loc or Loc(ir.paths[-1], 1, 1), message, hint, ir.sources[-1])


def _base_values(ir: ParameterisationIR) -> dict[sympy.Symbol, sympy.Rational]:
    return {BASE[a]: q.value for a, q in ir.axes.items()}


def check_identity_at_base(ir: ParameterisationIR, warnings: list[str] | None = None) -> None:
    """At m_N = m_L = m_B = m_D = 1 every rule must return the root file's base value.

    Weight decay is compared as the coupled (torch) value wd/lr when a role's decay is independent, and by value
    at the default HPs when symbols differ (a file may re-base it on a new hp such as `lambda_ind`). A role whose
    optimizer differs from the root's has no root value to return: its base values must only not depend on
    the base shape (n0, L0, ...). Fans are the same symbols on both sides; rules in the block index l are
    reported in `warnings` instead."""
    warnings = [] if warnings is None else warnings
    subs = dict(ONES)
    defaults = _hp_defaults(ir)
    for role, rules in ir.roles.items():
        same_optimizer = ir.optimizer(role) == ir.root_settings.get(role, {}).get("optimizer", "adamw")
        for kind, rule in rules.items():
            if LAYER in rule.expr.free_symbols:
                # A per-layer profile (e.g. (1 + l) / L) is by design not 1 at every block of the base shape.
                note = f"{kind} depends on the block index l (a per-block profile): not checked for identity at base"
                if note not in warnings:
                    warnings.append(note)
                continue
            root = ir.root_roles[role].get(kind)
            if rule.expr.free_symbols & TENSOR or (root is not None and root.expr.free_symbols & TENSOR):
                # fans at the base shape: the bundled GPT's (fan_in = n0 for hidden matrices, the vocabulary...)
                base = _base_values(ir)
                rule = Rule(_tensor_corners(rule.expr, role)[0].subs(base), rule.origins)
                root = Rule(_tensor_corners(root.expr, role)[0].subs(base), root.origins) if root is not None else None
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
    return diff == 0 or sympy.simplify(diff) == 0


def _free_of_base(ir, rule: Rule, subs, what: str) -> None:
    here = rule.expr.subs(subs)
    shape = sorted(str(s) for s in here.free_symbols if s in set(BASE.values()))
    if shape:
        raise _error_at(
            ir,
            rule.origins,
            f"{what} depends on the base shape ({', '.join(shape)}) at m_N = m_L = m_B = m_D = 1: gives {here}",
            "write scaling with the ratios m_N, m_L, m_B, m_D (e.g. m_N^-1, not 1/n)",
        )


def _same_at_base(ir, rule: Rule, root: Rule, subs, what: str) -> None:
    here, there = rule.expr.subs(subs), root.expr.subs(subs)
    diff = sympy.expand(here - there)
    if diff != 0 and sympy.simplify(diff) != 0:
        raise _error_at(
            ir,
            rule.origins,
            f"{what} is not the identity at the base shape: gives {here} where the base is {there}",
            "scaling rules must be 1 at m_N = m_L = m_B = m_D = 1 (e.g. write m_N^-1, not 1/n)",
        )


def _corners(ir: ParameterisationIR, used: set, with_hp_ranges: bool):
    """Corner points of the declared ranges of the symbols `used` by a rule (axes, params, and hp
    search ranges when asked; hps at their defaults otherwise)."""
    opts = []
    for a, q in ir.axes.items():
        if RATIO[a] in used:
            lo, hi = (q.low, q.high) if q.low is not None else (q.value, q.value)
            opts.append([(RATIO[a], float(sympy.Rational(v, q.value))) for v in sorted({lo, q.value, hi})])
    for k, q in ir.params.items():
        if param_symbol(k) in used:
            opts.append([(param_symbol(k), float(v)) for v in sorted({q.low, q.value, q.high})])
    for k, q in ir.hps.items():
        sym = hp_symbol(k, q.low)
        if sym in used:
            values = sorted({q.low, q.value, q.high}) if with_hp_ranges else [q.value]
            opts.append([(sym, float(v)) for v in values])
    for combo in itertools.product(*opts):
        yield dict(combo)


def check_domains(ir: ParameterisationIR, report: CheckReport) -> None:
    """HP domains must hold at every corner of the declared axis and param ranges (hp defaults);
    corners of the hp search ranges that break a domain are warnings."""
    base = _base_values(ir)
    memo: dict = {}  # many roles share one expression: evaluate each once
    for role, rules in ir.roles.items():
        for kind, (ok, desc) in DOMAINS.items():
            if kind not in rules:
                continue
            rule = rules[kind]
            for expr in _tensor_corners(rule.expr, role):
                expr = expr.subs(base)
                args = sorted(expr.free_symbols, key=str)
                f = _evaluator(expr, tuple(args))
                for strict in (True, False):
                    key = (expr, kind, strict)
                    if key not in memo:
                        memo[key] = _first_violation(f, args, ir, ok, with_hp_ranges=not strict)
                    bad = memo[key]
                    if bad is None:
                        continue
                    where = ", ".join(
                        f"{k}={_fmt(v)}"
                        for k, v in sorted(bad[0].items(), key=lambda kv: str(kv[0]))
                        if str(k).startswith("m_") or not strict
                    )
                    if strict:
                        hint = None
                        if kind.startswith("beta"):
                            hint = (
                                "(1-beta)*m_B/m_D >= 1 there: narrow the axis B or D ranges "
                                "(`axis B = ... in [lo, hi]`) or lower the batch/duration scaling"
                            )
                        raise _error_at(
                            ir,
                            rule.origins,
                            f"{kind} of role '{role}' leaves its domain ({desc}): {_fmt(bad[1])} at {where}",
                            hint or "check the rule's sign and the declared ranges",
                        )
                    seen = [w for w in report.warnings if w.startswith(f"{kind} ")]
                    if not seen:
                        report.warnings.append(
                            f"{kind} leaves {desc} at a corner of the hp search ranges, e.g. role '{role}' at "
                            f"{where}; the sweep range should avoid it"
                        )
                    break
    report.checked.append("domains")


def _tensor_corners(expr: sympy.Expr, role: str) -> list[sympy.Expr]:
    """Per-tensor symbols made concrete for the domain check: the bundled GPT's fans, and the first and the last
    block (l = 0 and l = L - 1)."""
    if not expr.free_symbols & TENSOR:
        return [expr]
    (ci, ei), (co, eo) = DEFAULT_FANS[role]
    n = BASE["n"] * RATIO["n"]
    out = expr.subs({FAN_IN: ci * n**ei, FAN_OUT: co * n**eo})
    if LAYER not in out.free_symbols:
        return [out]
    return [out.subs(LAYER, 0), out.subs(LAYER, BASE["L"] * RATIO["L"] - 1)]


@functools.lru_cache(maxsize=4096)
def _evaluator(expr: sympy.Expr, args: tuple):
    """Compile a rule expression into nested float closures (much faster than lambdify to build)."""
    index = {a: i for i, a in enumerate(args)}

    def build(e):
        if e.is_Symbol:
            k = index[e]
            return lambda v: v[k]
        if e.is_Number:
            c = float(e)
            return lambda v: c
        parts = [build(a) for a in e.args]
        if e.is_Add:
            return lambda v: math.fsum(p(v) for p in parts)
        if e.is_Mul:
            return lambda v: math.prod(p(v) for p in parts)
        if e.is_Pow:
            b, x = parts
            return lambda v: b(v) ** x(v)
        if isinstance(e, (sympy.Min, sympy.Max)):
            pick = min if isinstance(e, sympy.Min) else max
            return lambda v: pick(p(v) for p in parts)
        f = sympy.lambdify(args, e, modules="math")
        return lambda v: f(*v)

    root = build(expr)
    return lambda *values: root(values)


def _fmt(v) -> str:
    try:
        return f"{float(v):.4g}"
    except (TypeError, ValueError):
        return str(v)


def _first_violation(f, args, ir, ok, with_hp_ranges: bool):
    for point in _corners(ir, set(args), with_hp_ranges):
        try:
            value = f(*(point.get(a, math.nan) for a in args))
        except (ValueError, ZeroDivisionError, OverflowError):
            return point, float("nan")
        if isinstance(value, complex) or math.isnan(value) or not ok(value):
            return point, value
    return None


def run_checks(ir: ParameterisationIR) -> CheckReport:
    """All static checks; raises RuleError on the first failure, returns warnings otherwise."""
    report = CheckReport(ir.name)
    check_identity_at_base(ir, report.warnings)
    report.checked.append("identity at base")
    check_domains(ir, report)
    return report
