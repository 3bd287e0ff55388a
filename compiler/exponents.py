"""Scaling exponents: write each rule as C * m_N^a * m_L^b * m_B^c * m_D^d and read off (a, b, c, d)."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from fractions import Fraction

import sympy

from scalec.compiler import profile
from scalec.compiler.ir import ParameterisationIR
from scalec.compiler.symbols import BASE, FAN_IN, FAN_OUT, LAYER, RATIO, RATIO_SYMBOLS, TENSOR, param_symbol
from scalec.compiler.vocabulary import DEFAULT_FANS, MAIN_AXES, SITE_OF_ROLE

# Kinds whose exponent is read off (1 - value): rules may be written on 1-beta.
ONE_MINUS_KINDS = frozenset({"beta1", "beta2", "momentum"})
TABLE_KINDS = ("init_std", "lr", "weight_decay", "eps", "beta1", "beta2", "momentum", "mult")


_RHO = sympy.Symbol("rho", positive=True)  # relative depth of a block, l = rho * L
_T = sympy.Symbol("t_", positive=True)


@functools.lru_cache(maxsize=4096)
def per_role(expr: sympy.Expr, role: str, fans: tuple | None = None) -> sympy.Expr:
    """A rule with per-tensor symbols made analysable for one role: fans as constant x m_N^(the role's width
    exponent), depth profiles as positive constants bounded by their ranges, and the block index at a fixed
    relative depth (l = rho L) reduced to its leading power of m_L.  `fans` (ParameterisationIR.fans) defaults to
    the bundled role's."""
    if not expr.free_symbols & TENSOR:
        return expr
    expr = profile.flatten(expr)  # a depth profile's value is bounded in its declared range: Theta(1)
    (ci, ei), (co, eo) = DEFAULT_FANS[role] if fans is None else fans
    n0 = BASE["n"]
    out = expr.subs({FAN_IN: ci * n0**ei * RATIO["n"] ** ei, FAN_OUT: co * n0**eo * RATIO["n"] ** eo})
    if LAYER in out.free_symbols:
        out = out.subs(LAYER, _RHO * BASE["L"] * RATIO["L"])
        out = out.subs(RATIO["L"], 1 / _T).as_leading_term(_T).subs(_T, 1 / RATIO["L"])
    return out


def monomial_exponents(expr: sympy.Expr, axes=tuple(RATIO)) -> dict[str, sympy.Expr] | None:
    """Exponent of every ratio symbol if `expr` is a power law in them (constants are exponent 0), else None."""
    found = _monomial_exponents(expr, tuple(axes))
    return dict(found) if found is not None else None


@functools.lru_cache(maxsize=8192)
def _monomial_exponents(expr: sympy.Expr, axes: tuple[str, ...]):
    exps = {a: sympy.Integer(0) for a in axes}
    if expr == 0:
        return exps
    by_symbol = {RATIO[a]: a for a in axes}
    expr = sympy.powsimp(sympy.expand_power_base(expr, force=True), force=True)
    for factor in sympy.Mul.make_args(expr):
        base, exp = factor.as_base_exp()
        if base in by_symbol:
            exps[by_symbol[base]] += exp
        elif factor.free_symbols & RATIO_SYMBOLS:
            return None
    return tuple(exps.items())


def one_minus(expr: sympy.Expr) -> sympy.Expr:
    """The power law that 1-beta follows: 1 - expr, or for the half-life form beta0^E (E a product of ratio
    powers) E itself, since 1 - beta0^E = E * (1 - beta0) + O((1 - beta0)^2)."""
    if expr.is_Pow and not (expr.base.free_symbols & RATIO_SYMBOLS) and expr.exp.free_symbols & RATIO_SYMBOLS:
        if monomial_exponents(expr.exp) is not None:
            return (1 - expr.base) * expr.exp
    return 1 - expr


def to_fraction(value: sympy.Expr, params: dict[str, sympy.Rational]) -> Fraction | None:
    """A sympy exponent (possibly in params like alpha) evaluated at the params' values."""
    if value.is_Rational:  # most exponents: no params to substitute
        return Fraction(int(value.p), int(value.q))
    v = value.subs({param_symbol(k): q for k, q in params.items()})
    if not v.is_Rational:
        return None
    return Fraction(int(v.p), int(v.q))


@dataclass(frozen=True)
class ExponentRow:
    """Exponents of one (subject, hp) over the axes; symbolic keeps params such as alpha unevaluated."""

    subject: str
    hp: str
    exponents: dict[str, Fraction | None]
    symbolic: dict[str, str]
    zero: bool = False


@dataclass(frozen=True)
class ExponentTable:
    """The heart of `compare`: role x HP x axis exponents (plus sites and training steps)."""

    name: str
    rows: list[ExponentRow]
    axes: tuple[str, ...] = MAIN_AXES

    def get(self, subject: str, hp: str) -> ExponentRow:
        for r in self.rows:
            if r.subject == subject and r.hp == hp:
                return r
        raise KeyError((subject, hp))

    def to_markdown(self, symbolic: bool = True) -> str:
        head = "| module | HP | " + " | ".join(f"m_{a.upper()}" if len(a) == 1 else a for a in self.axes) + " |"
        lines = [head, "|" + "---|" * (len(self.axes) + 2)]
        for r in self.rows:
            cells = [r.symbolic[a] if symbolic else fmt_fraction(r.exponents[a]) for a in self.axes]
            lines.append(f"| {r.subject} | {r.hp} | " + " | ".join(cells) + " |")
        return "\n".join(lines)


def fmt_fraction(f: Fraction | None) -> str:
    if f is None:
        return "~"
    return str(f.numerator) if f.denominator == 1 else f"{f.numerator}/{f.denominator}"


def _label(hp: str) -> str:
    return f"1-{hp}" if hp in ONE_MINUS_KINDS else hp


def effective_mult(ir: ParameterisationIR, role: str) -> sympy.Expr:
    """A role's forward multiplier including the site that acts on it (output.mult, embed.mult)."""
    mult = per_role(ir.roles[role]["mult"].expr, role, ir.fans(role))
    if role in SITE_OF_ROLE:
        mult = mult * ir.sites[SITE_OF_ROLE[role]].expr
    return mult


def _row(subject: str, hp: str, expr: sympy.Expr, ir: ParameterisationIR, axes) -> ExponentRow:
    exps = monomial_exponents(expr, axes)
    params = {k: q.value for k, q in ir.params.items()}
    if exps is None:
        return ExponentRow(subject, hp, {a: None for a in axes}, {a: "~" for a in axes})
    return ExponentRow(
        subject,
        hp,
        {a: to_fraction(e, params) for a, e in exps.items()},
        {a: str(sympy.simplify(e)).replace("**", "^") for a, e in exps.items()},
        zero=(expr == 0),
    )


def exponent_table(ir: ParameterisationIR, axes: tuple[str, ...] = MAIN_AXES, effective: bool = False) -> ExponentTable:
    """Every role x HP (and site) as exponents over `axes`. `effective` folds sites into role mults."""
    rows: list[ExponentRow] = []
    for role, rules in ir.roles.items():
        for hp in TABLE_KINDS:
            if hp not in rules:
                continue  # a target this role's optimizer does not have (compiler/optimizers.py)
            expr = per_role(rules[hp].expr, role, ir.fans(role))
            if hp in ONE_MINUS_KINDS:
                expr = one_minus(expr)
            if hp == "mult" and effective:
                expr = effective_mult(ir, role)
            rows.append(_row(role, _label(hp), expr, ir, axes))
    for site, rule in ir.sites.items():
        rows.append(_row(site, "site", rule.expr, ir, axes + (("d_head",) if site == "attn.scale" else ())))
    steps = RATIO["D"] / RATIO["B"]
    rows.append(_row("training", "steps", steps, ir, axes))
    return ExponentTable(ir.name, rows, axes)
