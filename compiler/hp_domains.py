"""The values a tunable hyperparameter may take, derived from the targets it flows into (the IR knows them).

An HP's domain is the set of values for which every role value and forward site it enters stays in that
target's domain (compiler/domain.py) at the base shape, the file's params substituted and the other HPs at their
defaults; sympy solves it exactly (`beta1` entering `1-beta1 *= m_B/m_D` gives `0 <= beta1 < 1`; `lambda_ind`
entering an independent weight decay gives `lambda_ind >= 0`). A depth profile's knots are interpolated in log
space, so each knot is positive as well. A per-module multiplier `kind[role]` multiplies a value of `kind`, whose
domain is a cone (`lr > 0`, `init_std >= 0`, `mult != 0`): it takes the cone's own sign condition. Shapes away
from the base are the feasible region's business (compiler/region.py); the compiled module checks every value it
returns besides.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import sympy

from scalec.compiler import profile
from scalec.compiler.domain import Domain, domain_of
from scalec.compiler.ir import Origin, ParameterisationIR
from scalec.compiler.region import error_at, tensor_corners
from scalec.compiler.symbols import BASE, ONES, hp_symbol, param_symbol
from scalec.compiler.vocabulary import MODULE_HP_KINDS


def derive_hp_domains(ir: ParameterisationIR) -> dict[str, Domain]:
    """Each HP's domain (global HPs, depth-profile knots and per-module multipliers `kind[role]`), exactly.

    Raises RuleError when an HP can take no value, when its allowed values are not one interval (or the reals
    without 0), or when its default or declared search range leaves the domain."""
    symbols = {name: hp_symbol(name, q.low) for name, q in ir.hps.items()}
    defaults = {symbols[name]: q.value for name, q in ir.hps.items()}
    fixed = {param_symbol(k): q.value for k, q in ir.params.items()} | {BASE[a]: q.value for a, q in ir.axes.items()}
    fixed = {s: sympy.sympify(v) for s, v in (fixed | ONES).items()}  # sympy values: xreplace keeps an Expr
    knots = {k: p for p in ir.profiles.values() for k in p.knots}
    targets: list[tuple[str, sympy.Expr, Origin | None]] = []  # (kind, expression at the base shape, origin)
    for role, rules in ir.roles.items():
        for kind, rule in rules.items():
            expr = profile.at_defaults(rule.expr, ir.profiles)
            for corner in tensor_corners(expr, role, ir.fans(role)):  # the role's fans; first and last block
                at_base = sympy.sympify(corner).xreplace(fixed)
                targets.append((kind, at_base, rule.origins[-1] if rule.origins else None))
    targets += [
        ("site", sympy.sympify(r.expr).xreplace(fixed), r.origins[-1] if r.origins else None) for r in ir.sites.values()
    ]
    out: dict[str, Domain] = {}
    for name, q in ir.hps.items():
        sym = symbols[name]
        x = _VALUE
        allowed: sympy.Set = sympy.S.Reals
        if name in knots:  # interpolated in log space (compiler/profile.py): a knot is positive
            allowed = sympy.Interval.open(0, sympy.oo)
        entered: list[str] = []
        seen: set[tuple[str, sympy.Expr]] = set()
        for kind, expr, _origin in targets:
            if sym not in expr.free_symbols or (kind, expr) in seen:
                continue
            seen.add((kind, expr))
            f = expr.xreplace({s: v for s, v in defaults.items() if s != sym}).xreplace({sym: x})
            allowed = allowed.intersect(_values_in(f, x, domain_of(kind)))
            if kind not in entered:
                entered.append(kind)
        out[name] = _as_domain(ir, name, q, allowed, entered)
    for role in ir.roles:
        for kind in MODULE_HP_KINDS:
            if kind in ir.roles[role]:
                out[f"{kind}[{role}]"] = cone(f"{kind}[{role}]", domain_of(kind))
    return out


def cone(name: str, target: Domain) -> Domain:
    """The domain of a factor c on a value of `target`, a cone: c keeps the cone's sign condition."""
    if target.low == 0 and target.high is None:
        return Domain(name, low=0, low_strict=target.low_strict)
    if target.low is None and target.high is None:
        return Domain(name, nonzero=target.nonzero)
    raise ValueError(f"a per-module multiplier on {target.kind} needs a cone domain; got {target.text}")


# The HP's value in every target expression: one fixed Dummy (never equal to a rule's symbol), so that the same
# expression of the value (`x`, `x**2`, `1 - x`, ... recur across HPs and rules) is solved once per process.
_VALUE = sympy.Dummy("hp_value", dummy_index=0, real=True)


@lru_cache(maxsize=4096)
def _values_in(f: sympy.Expr, x: sympy.Symbol, target: Domain) -> sympy.Set:
    """The real x with f(x) inside `target` (finite)."""
    allowed: sympy.Set = sympy.S.Reals
    conditions = []
    if target.low is not None:
        low = sympy.Rational(target.low)
        conditions.append(f > low if target.low_strict else f >= low)
    if target.high is not None:
        high = sympy.Rational(target.high)
        conditions.append(f < high if target.high_strict else f <= high)
    for cond in conditions:
        if cond is sympy.true:
            continue
        allowed = allowed.intersect(sympy.solveset(cond, x, sympy.S.Reals))
    if target.nonzero:
        allowed = allowed - sympy.solveset(sympy.Eq(f, 0), x, sympy.S.Reals)
    try:
        poles = sympy.singularities(f, x) if f.free_symbols else sympy.S.EmptySet
    except NotImplementedError:
        poles = sympy.S.EmptySet  # the inequalities above already exclude the poles sympy can find
    return allowed - poles


def _as_domain(ir: ParameterisationIR, name: str, q: Any, allowed: sympy.Set, entered: list[str]) -> Domain:
    """`allowed` as a Domain; a RuleError at the HP's declaration when it is empty, not an interval, or excludes
    the default or part of the declared search range."""
    where = f"the targets it enters ({', '.join(entered)})" if entered else "no target"

    def fail(message: str, hint: str) -> Exception:
        origin = Origin(q.loc.path, q.loc.line, name)
        return error_at(ir, (origin,), f"hp {name}: {message}", hint)

    if allowed is sympy.S.EmptySet:
        raise fail(f"no value keeps {where} in their domains", "check the rules that use it")
    if allowed == sympy.S.Reals:
        domain = Domain(name)
    elif allowed == sympy.S.Reals - sympy.FiniteSet(0):
        domain = Domain(name, nonzero=True)
    elif isinstance(allowed, sympy.Interval):
        lo, hi = allowed.start, allowed.end
        domain = Domain(
            name,
            low=None if lo == -sympy.oo else float(lo),
            low_strict=bool(allowed.left_open) and lo != -sympy.oo,
            high=None if hi == sympy.oo else float(hi),
            high_strict=bool(allowed.right_open) and hi != sympy.oo,
        )
    else:
        shown = allowed.xreplace({_VALUE: sympy.Symbol(name)})  # a condition set names the HP, not the Dummy
        raise fail(f"the values {where} allow are {shown}, not one interval", "write the rules so it has one range")
    if not domain.holds(float(q.value)):
        raise fail(f"its default {q.value} is outside its domain {domain.text}, from {where}", "change the default")
    if q.low is not None and not (domain.holds(float(q.low)) and domain.holds(float(q.high))):
        raise fail(
            f"its search range [{q.low}, {q.high}] leaves its domain {domain.text}, from {where}",
            "narrow the range to the domain",
        )
    return domain
