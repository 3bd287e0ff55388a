"""The feasible region: where every role's hyperparameters and every forward site stay in their domains.

A monomial rule `C * prod m_a^e` is linear in log space, so a domain bound on it is one linear inequality in
(log m_N, log m_L, log m_B, log m_D, log m_H): kept as a Constraint when it cuts the axis box, and written in the
user's terms (Complete(d)P: `1-beta1 = 0.1 * S0/S <= 1`, i.e. steps S >= 102.4). Other expressions (sums, min/max,
sqrt, powers with ratio exponents) are decided with sympy over the box: exact real roots and poles in one variable,
rigorous interval enclosures (mpmath.iv) otherwise. A zero, pole or sign change that breaks a domain is an error
naming the shape; what the analysis cannot decide is a warning naming the expression, never a silent pass.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import sympy
from mpmath import iv

from scalec.compiler import profile
from scalec.compiler.domain import Domain, domain_of
from scalec.compiler.exponents import monomial_exponents
from scalec.compiler.ir import Constraint, Origin, ParameterisationIR, Rule
from scalec.compiler.symbols import BASE, FAN_IN, FAN_OUT, LAYER, RATIO, RATIO_SYMBOLS, TENSOR, hp_symbol, param_symbol
from scalec.compiler.vocabulary import AXES, DEFAULT_FANS, compress_roles
from scalec.dsl.ast import Loc
from scalec.dsl.errors import RuleError

AXIS_OF = {r: a for a, r in RATIO.items()}
_ROLE_KINDS = ("init_mean", "init_std", "lr", "weight_decay", "beta1", "beta2", "eps", "momentum", "ns_steps", "mult")
_INV = {"<=": ">=", "<": ">", ">=": "<=", ">": "<"}
# Every run takes at least one optimizer step: D >= B, i.e. (1/S0) * m_B/m_D <= 1.
STEP_REASON = "a run takes at least one optimizer step"


@dataclass
class RegionReport:
    """What the analysis derived: the constraints beyond the box and the warnings (undecided, hp ranges)."""

    constraints: list[Constraint] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Sign:
    """Sign of an expression over the box: `ok` (proven), or a witness of what breaks, or undecided."""

    ok: bool
    point: dict | None = None  # ratio symbol -> value where it breaks
    value: object = None  # the value there (0, a negative number, "infinite", "not real")
    undecided: bool = False


class _Analysis:
    def __init__(self, ir: ParameterisationIR):
        self.ir = ir
        self.base = {BASE[a]: q.value for a, q in ir.axes.items()}
        self.params = {param_symbol(k): q.value for k, q in ir.params.items()}
        # hps, and each depth profile's block value (bounded by its declared range, default at the defaults)
        self.quantities = {**ir.hps, **{p.value_name: p.quantity for p in ir.profiles.values()}}
        self.hp_syms = {hp_symbol(k, q.low): k for k, q in self.quantities.items()}
        self.defaults = {s: self.quantities[k].value for s, k in self.hp_syms.items()}
        self.box = {}
        for a, q in ir.axes.items():
            lo, hi = (q.low, q.high) if q.low is not None else (q.value, q.value)
            self.box[RATIO[a]] = (sympy.Rational(lo) / q.value, sympy.Rational(hi) / q.value)
        self.profile_syms = {p.value_symbol for p in ir.profiles.values()}
        self.report = RegionReport()
        self.memo: dict = {}

    # ---- entry ------------------------------------------------------------------------------------
    def run(self) -> RegionReport:
        found: dict[tuple, Constraint] = {}
        subjects = [
            (f"{k} of role '{r}'", r, k, Rule(e, rule.origins))
            for r, rules in self.ir.roles.items()
            for k, rule in ((k, rules[k]) for k in _ROLE_KINDS if k in rules)  # each optimizer has its own targets
            for e in tensor_corners(rule.expr, r)
        ]
        subjects += [(f"site '{s}'", None, "site", rule) for s, rule in self.ir.sites.items()]
        fixed = self.params | self.base
        for what, role, kind, rule in subjects:
            key = (rule.expr, kind)  # many roles share one expression: analyse each once
            if key not in self.memo:
                self.memo[key] = self.conditions(rule.expr.xreplace(fixed), domain_of(kind))
            for cond in self.memo[key]:
                if isinstance(cond, Constraint) and cond.coefficient.free_symbols & self.profile_syms:
                    raise error_at(
                        self.ir,
                        rule.origins,
                        f"{what} is bounded ({cond.reason}) through a depth profile: the shapes allowed would differ "
                        "per block",
                        "use depth profiles on lr, init_std, weight_decay or eps, where any positive value is valid",
                    )
                if isinstance(cond, Constraint):
                    k = (cond.subject, cond.coefficient, cond.exponents, cond.op, cond.limit)
                    prev = found.get(k)
                    roles = (prev.roles if prev else ()) + ((role,) if role else ())
                    origins = tuple(dict.fromkeys((prev.origins if prev else ()) + rule.origins[-1:]))
                    found[k] = Constraint(*k[:4], cond.limit, cond.reason, roles, origins)
                else:
                    self.fail(what, kind, rule.origins, cond)
        found_list = list(found.values())
        step = self.step_constraint()
        if step is not None:
            found_list.append(step)
        self.report.constraints = found_list
        return self.report

    def step_constraint(self) -> Constraint | None:
        s0 = self.base[BASE["D"]] / self.base[BASE["B"]]
        c = Constraint("1/S", 1 / s0, (("B", sympy.Integer(1)), ("D", sympy.Integer(-1))), "<=", 1, STEP_REASON)
        if self.cuts_box(c, self.defaults):
            return c
        return None

    # ---- one expression against one domain --------------------------------------------------------
    def conditions(self, expr: sympy.Expr, dom: Domain) -> list:
        """Constraints the domain puts on `expr` (a list of Constraint) and failures (tuples) found."""
        out: list = []
        sides = []
        if dom.low is not None:
            sides.append((sympy.Rational(dom.low), dom.low_strict, "low"))
        if dom.high is not None:
            sides.append((sympy.Rational(dom.high), dom.high_strict, "high"))
        for bound, strict, side in sides:
            out.extend(self.side(expr, dom, bound, strict, side))
        if dom.nonzero or not sides:
            mono = self.monomial(expr)
            if mono is not None:
                coef = mono[0]
                if dom.nonzero and self.at_defaults(coef) == 0:
                    out.append(("zero", None, sympy.Integer(0), dom))
            else:
                sign = self.sign(expr, None if not dom.nonzero else "nonzero", dom)
                if not sign.ok:
                    out.append(("sign", sign, expr, dom))
        return out

    def side(self, expr, dom: Domain, bound, strict: bool, side: str) -> list:
        """`expr >(=) bound` (side low) or `expr <(=) bound` (side high)."""
        gap = expr - bound if side == "low" else bound - expr  # must be > 0 (strict) or >= 0
        mono = self.monomial(gap)
        if mono is not None:  # the gap itself is a monomial: only its coefficient's sign matters
            return self.coefficient_sign(mono[0], strict, dom)
        other = dom.high if side == "low" else dom.low
        # expr (or other - expr, when the rule is written on 1-beta) is a monomial: a log-linear constraint.
        for flip in (False, True):
            if flip and other is None:
                continue
            subject = f"{_num(other)}-{dom.kind}" if flip else dom.kind
            value = sympy.Rational(other) - expr if flip else expr
            mono = self.monomial(value)
            if mono is None:
                continue
            coef, exps = mono
            # value op limit, with value = other - expr when flipped (bounds swap direction)
            if not flip:
                op, limit = (">" if strict else ">=", bound) if side == "low" else ("<" if strict else "<=", bound)
            else:
                limit = sympy.Rational(other) - bound
                op = ("<" if strict else "<=") if side == "low" else (">" if strict else ">=")
            if op in (">", ">=") and limit <= 0:
                return self.coefficient_sign(coef, op == ">", dom)
            fails = self.coefficient_sign(coef, True, dom)
            if fails:
                return fails
            c = Constraint(subject, coef, exps, op, sympy.Rational(limit), dom.text)
            if not self.holds_at_base(c, self.defaults):
                return [("base", None, expr, dom)]
            if not self.holds_at_base_over_hp_ranges(c):
                self.warn_hp(dom, f"{subject} = {_text(coef * _monomial(exps))}", "at the base shape")
            return [c] if self.cuts_box(c, self.defaults) else []
        sign = self.sign(gap, "strict" if strict else "weak", dom)
        return [] if sign.ok else [("sign", sign, expr, dom)]

    def coefficient_sign(self, coef, strict: bool, dom: Domain) -> list:
        """A monomial's sign is its coefficient's: at the hp defaults (error) and over the hp ranges (warning)."""
        value = self.at_defaults(coef)
        if value.is_real is False or (value < 0 or (strict and value == 0)):
            return [("coef", None, value, dom)]
        enc = self.enclose(coef, hp_ranges=True)
        if enc is None or enc.a < 0 or (strict and enc.a <= 0):
            self.warn_hp(dom, _text(coef), "over the hp search ranges")
        return []

    # ---- log-linear constraints -------------------------------------------------------------------
    def log_range(self, exps) -> tuple[sympy.Expr, sympy.Expr]:
        """Min and max over the box of prod m_a^e."""
        lo = hi = sympy.Integer(1)
        for a, e in exps:
            b_lo, b_hi = self.box[RATIO[a]]
            x, y = b_lo**e, b_hi**e
            lo, hi = lo * min(x, y, key=float), hi * max(x, y, key=float)
        return lo, hi

    def cuts_box(self, c: Constraint, hps) -> bool:
        """Does the constraint exclude part of the axis box (at these hp values)?"""
        lo, hi = self.log_range(c.exponents)
        coef = c.coefficient.subs(hps)
        worst = coef * (hi if c.op in ("<", "<=") else lo)
        return not bool(_compare(worst, c.op, c.limit))

    def holds_at_base(self, c: Constraint, hps) -> bool:
        return bool(_compare(c.coefficient.subs(hps), c.op, c.limit))

    def holds_at_base_over_hp_ranges(self, c: Constraint) -> bool:
        enc = self.enclose(c.coefficient, hp_ranges=True)
        if enc is None:
            return False
        lim = float(c.limit)
        return {"<=": enc.b <= lim, "<": enc.b < lim, ">=": enc.a >= lim, ">": enc.a > lim}[c.op]

    # ---- helpers -----------------------------------------------------------------------------------
    def monomial(self, expr):
        """(coefficient, ((axis, exponent), ...)) if expr = coefficient * prod m_a^e, else None."""
        fast = _split_monomial(expr)
        if fast is not None:
            coef, exps = fast
            return coef, tuple((a, e) for a, e in exps.items() if e != 0)
        if expr.is_Add or not (expr.free_symbols & RATIO_SYMBOLS):
            return None
        exps = monomial_exponents(expr)
        if exps is None:
            return None
        if any(not e.is_Rational for e in exps.values()):
            return None
        mono = _monomial(tuple((a, e) for a, e in exps.items() if e != 0))
        coef = sympy.powsimp(sympy.expand_power_base(expr / mono, force=True), force=True)
        if coef.free_symbols & RATIO_SYMBOLS:
            coef = sympy.simplify(coef)
            if coef.free_symbols & RATIO_SYMBOLS:
                return None
        return coef, tuple((a, e) for a, e in exps.items() if e != 0)

    def at_defaults(self, e):
        return e.xreplace(self.defaults) if e.free_symbols else e

    def enclose(self, e, hp_ranges: bool, box: bool = True):
        """A rigorous interval enclosure of `e` (mpmath.iv) over the box and hp ranges/defaults; None if unknown."""
        env = {}
        for s in e.free_symbols:
            if s in self.box:
                lo, hi = self.box[s]
                env[s] = iv.mpf([_iv(lo).a, _iv(hi).b]) if box else iv.mpf(1)
            elif s in self.hp_syms:
                q = self.quantities[self.hp_syms[s]]
                env[s] = iv.mpf([_iv(q.low).a, _iv(q.high).b]) if hp_ranges else _iv(q.value)
            else:
                return None
        try:
            return _enclose(e, env)
        except (ValueError, ZeroDivisionError, TypeError, OverflowError):
            return None

    def warn_hp(self, dom: Domain, expr: str, where: str) -> None:
        text = f"{dom.text} may break {where}: {expr}; narrow the hp search range"
        if text not in self.report.warnings:
            self.report.warnings.append(text)

    # ---- signs of non-monomial expressions ---------------------------------------------------------
    def sign(self, g: sympy.Expr, strict: str | None, dom: Domain) -> _Sign:
        """Prove `g > 0` (strict), `g >= 0` (weak), `g != 0` (nonzero) or finite (None) over the box at the hp
        defaults; otherwise return a witness or `undecided`. Over the hp ranges, failures become warnings."""
        result = self._sign(g.xreplace(self.defaults), strict)
        if result.ok and g.free_symbols & set(self.hp_syms):
            enc = self.enclose(g, hp_ranges=True)
            if not _enc_ok(enc, strict):
                self.warn_hp(dom, _text(g), "over the hp search ranges")
        return result

    def _sign(self, g, strict) -> _Sign:
        if g.is_Mul:  # positive monomial factors (ratios are positive) do not change the sign: drop them
            keep, negative = [], False
            for factor in g.args:
                mono = self.monomial(factor)
                if mono is not None and mono[0].is_number and mono[0] != 0:
                    negative ^= bool(mono[0] < 0)
                    continue
                keep.append(factor)
            g = -sympy.Mul(*keep) if negative else sympy.Mul(*keep)
        enc = self.enclose(g, hp_ranges=False)
        if _enc_ok(enc, strict):
            return _Sign(True)
        one = self.one_dim(g)
        if one is not None:
            found = self.roots_1d(*one, strict)
            if found is not None:
                return found
        return self.grid(g, strict)

    def one_dim(self, g):
        """(f(u), u, lo, hi, to_point) when g depends on the ratios through one monomial u only, else None."""
        atoms: list = []

        def walk(e):
            if not (e.free_symbols & RATIO_SYMBOLS):
                return
            if not e.is_Add:
                mono = self.monomial(e)
                if mono is not None and mono[1]:
                    atoms.append((e, mono))
                    return
            for a in e.args:
                walk(a)

        walk(g)
        if not atoms:
            return None
        v = dict(atoms[0][1][1])
        axis0 = next(iter(v))
        u = sympy.Symbol("u", positive=True)
        repl = {}
        for e, (coef, exps) in atoms:
            w = dict(exps)
            if set(w) != set(v):
                return None
            k = w[axis0] / v[axis0]
            if any(w[a] != k * v[a] for a in v):
                return None
            repl[e] = coef * u**k
        f = g.xreplace(repl)
        if f.free_symbols & RATIO_SYMBOLS:
            return None
        lo, hi = self.log_range(tuple(v.items()))

        def to_point(value):
            """A shape (ratio values) where u = value: move one axis at a time, from the base."""
            point, rest = {}, math.log(float(value))
            for a, e in v.items():
                b_lo, b_hi = (math.log(float(x)) for x in self.box[RATIO[a]])
                x = min(max(rest / float(e), b_lo), b_hi)
                point[RATIO[a]] = sympy.nsimplify(math.exp(x)) if len(v) > 1 else value
                rest -= float(e) * x
            return point

        return f, u, lo, hi, to_point

    def roots_1d(self, f, u, lo, hi, to_point, strict) -> _Sign | None:
        """Exact zeros and poles of f(u) on [lo, hi], then its sign between them; None if sympy cannot tell."""
        num, den = sympy.fraction(sympy.together(f))
        where = sympy.Interval(lo, hi)
        try:
            zeros, poles = sympy.solveset(num, u, where), sympy.solveset(den, u, where)
        except (NotImplementedError, ValueError, TypeError):
            return None
        finite = (sympy.FiniteSet, type(sympy.S.EmptySet))
        if not isinstance(zeros, finite) or not isinstance(poles, finite):
            return None
        for p in sorted(poles, key=float):
            return _Sign(False, to_point(p), "infinite")
        cuts = sorted(set(zeros) | {lo, hi}, key=float)
        samples = list(cuts) + [(x + y) / 2 for x, y in itertools.pairwise(cuts)]
        for p in samples:  # zeros and the box's ends first: they make the plainest witnesses
            value = f.subs(u, p).evalf(30)
            if value.is_real is False or value.has(sympy.I):
                return _Sign(False, to_point(p), "not real")
            if not _value_ok(value, strict):
                return _Sign(False, to_point(p), 0 if p in zeros else value)
        return _Sign(True)

    def grid(self, g, strict) -> _Sign:
        """A search for a witness on a log grid over the box; a found failure is exact, none is undecided."""
        syms = sorted(g.free_symbols & RATIO_SYMBOLS, key=str)
        axes_points = []
        for s in syms:
            lo, hi = self.box[s]
            pts = {lo, hi, sympy.Integer(1)} | {sympy.nsimplify(2 ** (k / 4)) for k in range(-80, 81)}
            axes_points.append(sorted((p for p in pts if lo <= p <= hi), key=float))
        total = math.prod(len(p) for p in axes_points)
        step = max(1, round(total ** (1 / max(1, len(syms))) / 12)) if total > 4000 else 1
        for combo in itertools.product(*(p[::step] for p in axes_points)):
            point = dict(zip(syms, combo, strict=True))
            value = g.subs(point).evalf(30)
            if value.has(sympy.zoo, sympy.oo, -sympy.oo, sympy.nan):
                return _Sign(False, point, "infinite")
            if value.is_real is False or value.has(sympy.I):
                return _Sign(False, point, "not real")
            if not _value_ok(value, strict):
                return _Sign(False, point, value)
        return _Sign(False, undecided=True, value=g)

    # ---- errors --------------------------------------------------------------------------------------
    def fail(self, what: str, kind: str, origins: tuple[Origin, ...], cond) -> None:
        tag, sign, value, dom = cond
        if tag == "sign" and sign.undecided:
            self.report.warnings.append(
                f"cannot decide whether {what} keeps {dom.text} over the axis box: {_text(value)}; "
                "check it by hand or write the rule as a product of powers"
            )
            return
        label = kind if kind != "site" else what.split("'")[1]
        if tag == "sign":
            shown = sign.value
            if not isinstance(shown, str):  # the HP's own value there (the analysis saw a gap to a bound)
                at = {r: 1 for r in value.free_symbols & RATIO_SYMBOLS} | sign.point  # other axes at the base
                shown = _fmt(value.xreplace(self.defaults).subs(at).evalf(30))
            msg = f"{what} leaves its domain ({dom.text}): {label} = {shown} at {self.where(sign.point)}"
            hint = "a zero, pole or sign change inside the axis box: rewrite the rule or narrow the axis ranges"
        elif tag == "base":
            msg = f"{what} leaves its domain ({dom.text}) at the base shape with the default hps"
            hint = "check the rule and the hp defaults"
        else:
            msg = f"{what} leaves its domain ({dom.text}): its coefficient is {_fmt(value)} at the hp defaults"
            hint = "check the rule's sign and the hp defaults"
        raise error_at(self.ir, origins, msg, hint)

    def where(self, point) -> str:
        if not point:
            return "every shape"
        order = list(AXES)
        point = dict(sorted(point.items(), key=lambda kv: order.index(AXIS_OF[kv[0]])))
        shape = ", ".join(
            f"{AXIS_OF[s]} = {_fmt(v * self.base[BASE[AXIS_OF[s]]], AXIS_OF[s])}" for s, v in point.items()
        )
        ratios = ", ".join(f"{s} = {_fmt(v, 'ratio')}" for s, v in point.items())
        return f"{shape} ({ratios})"


def tensor_corners(expr: sympy.Expr, role: str) -> list[sympy.Expr]:
    """Per-tensor symbols made concrete: the bundled GPT's fans, depth profiles as their bounded values, and the
    first and the last block (l = 0 and l = L - 1), so the analyses over the axis box see only ratios, hps and
    params."""
    if not expr.free_symbols & TENSOR:
        return [expr]
    expr = profile.flatten(expr)  # a depth profile's value: positive, bounded by its range (the analysis knows it)
    (ci, ei), (co, eo) = DEFAULT_FANS[role]
    n = BASE["n"] * RATIO["n"]
    out = expr.subs({FAN_IN: ci * n**ei, FAN_OUT: co * n**eo})
    if LAYER not in out.free_symbols:
        return [out]
    return [out.subs(LAYER, 0), out.subs(LAYER, BASE["L"] * RATIO["L"] - 1)]


def error_at(ir: ParameterisationIR, origins: tuple[Origin, ...], message: str, hint: str | None) -> RuleError:
    if origins:
        o = origins[-1]
        idx = ir.paths.index(o.path) if o.path in ir.paths else -1
        return RuleError(Loc(o.path, o.line, 1), message, hint, ir.sources[idx] if idx >= 0 else None)
    return RuleError(ir.header_loc or Loc(ir.paths[-1], 1, 1), message, hint, ir.sources[-1])


def _split_monomial(e: sympy.Expr):
    """A structural split of `e` into (coefficient free of ratios, {axis: rational exponent}); None if it is not
    plainly a product of ratio powers (the slower sympy normalisation then decides)."""
    if not (e.free_symbols & RATIO_SYMBOLS):
        return e, {}
    if e in RATIO_SYMBOLS:
        return sympy.Integer(1), {AXIS_OF[e]: sympy.Integer(1)}
    if e.is_Pow and e.exp.is_Rational:
        inner = _split_monomial(e.base)
        if inner is None:
            return None
        return inner[0] ** e.exp, {a: x * e.exp for a, x in inner[1].items()}
    if e.is_Mul:
        coef, exps = sympy.Integer(1), {}
        for factor in e.args:
            part = _split_monomial(factor)
            if part is None:
                return None
            coef = coef * part[0]
            for a, x in part[1].items():
                exps[a] = exps.get(a, 0) + x
        return coef, exps
    return None


def _monomial(exps) -> sympy.Expr:
    return sympy.Mul(*(RATIO[a] ** e for a, e in exps))


def _compare(x, op, y):
    return {"<=": x <= y, "<": x < y, ">=": x >= y, ">": x > y}[op]


def _value_ok(value, strict) -> bool:
    if strict == "strict":
        return value > 0
    if strict == "weak":
        return value >= 0
    if strict == "nonzero":
        return value != 0
    return True


def _enc_ok(enc, strict) -> bool:
    if enc is None:
        return False
    if strict == "strict":
        return enc.a > 0
    if strict == "weak":
        return enc.a >= 0
    if strict == "nonzero":
        return enc.a > 0 or enc.b < 0
    return math.isfinite(float(enc.a)) and math.isfinite(float(enc.b))


def _iv(r) -> iv.mpf:
    r = sympy.Rational(r)
    return iv.mpf(int(r.p)) / iv.mpf(int(r.q))


def _enclose(e, env):
    """Interval arithmetic over sympy's tree (outward-rounded by mpmath.iv)."""
    if e.is_Rational:
        return _iv(e)
    if e.is_Number:
        return iv.mpf(str(sympy.Float(e, 30)))
    if e.is_Symbol:
        return env[e]
    if e.is_Add:
        return sum((_enclose(a, env) for a in e.args), iv.mpf(0))
    if e.is_Mul:
        out = iv.mpf(1)
        for a in e.args:
            out = out * _enclose(a, env)
        return out
    if e.is_Pow:
        b, x = e.args
        if x.is_Integer:
            return _enclose(b, env) ** int(x)
        base = _enclose(b, env)
        if base.a <= 0:
            raise ValueError("power of a possibly non-positive base")
        return iv.exp(_enclose(x, env) * iv.log(base))
    if isinstance(e, (sympy.Min, sympy.Max)):
        parts = [_enclose(a, env) for a in e.args]
        pick = min if isinstance(e, sympy.Min) else max
        return iv.mpf([pick(p.a for p in parts), pick(p.b for p in parts)])
    raise TypeError(f"no enclosure for {e.func}")


def _fmt(v, axis: str = "") -> str:
    """A number for messages; token counts (B, D) that are powers of two as `2^k`."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    if f > 0 and abs(math.log2(f) - round(math.log2(f))) < 1e-9:  # witness points found in log space
        f = 2.0 ** round(math.log2(f))
    if axis in ("B", "D") and f >= 256 and math.log2(f).is_integer():
        return f"2^{int(math.log2(f))}"
    if f.is_integer() and abs(f) < 1e15:
        return str(int(f))
    return f"{f:.4g}"


def _num(v) -> str:
    return str(int(v)) if float(v).is_integer() else str(v)


def _text(e) -> str:
    return str(e).replace("**", "^")


# ---- the region in the user's terms -------------------------------------------------------------------------
@dataclass(frozen=True)
class UserForm:
    """A constraint as `quantity op bound`: quantity a monomial of absolute axes (S = D/B for steps)."""

    quantity: str  # "S" or "B" or "n^(1/2)*B/D"
    axes: dict[str, sympy.Rational]  # exponent of each absolute axis in the quantity
    op: str
    bound: sympy.Expr  # in hp symbols
    steps: bool
    why: str  # "1-beta1 = {c}*S0/S must stay <= 1"


def user_form(c: Constraint, ir: ParameterisationIR) -> UserForm:
    """`coef * prod (X/X0)^a op limit` rewritten as `Q op' bound` with Q a monomial of the axes."""
    a = dict(c.exponents)
    steps = set(a) == {"B", "D"} and a["B"] == -a["D"]
    g = -a["B"] if steps else (a[next(iter(a))] if len(a) == 1 else sympy.Integer(1))
    q_exps = {x: e / g for x, e in a.items()}
    base = {x: ir.axes[x].value for x in AXES}
    q0 = sympy.Mul(*(base[x] ** e for x, e in q_exps.items()))
    bound = q0 * (c.limit / c.coefficient) ** (1 / g)
    op = c.op if g > 0 else _INV[c.op]
    if steps:
        quantity = "S"
        mono = {-1: "S0/S", 1: "S/S0"}.get(g, f"(S/S0)^{_text(g)}")
    else:
        quantity = _text(sympy.Mul(*(sympy.Symbol(x, positive=True) ** e for x, e in q_exps.items())))
        mono = _text(_monomial(c.exponents))
    if c.reason == STEP_REASON:
        why = STEP_REASON
    else:
        why = f"{c.subject} = {{c:.4g}}*{mono} must stay {c.op} {_num(c.limit)} ({c.reason})"
    return UserForm(quantity, q_exps, op, sympy.nsimplify(bound), steps, why)


def describe(c: Constraint, ir: ParameterisationIR) -> str:
    """One line for `scalec check` / `show`: `S = D/B >= 102.4  (0 <= beta1 < 1, all roles: 1-beta1 = ...)`."""
    form = user_form(c, ir)
    defaults = {hp_symbol(k, q.low): q.value for k, q in ir.hps.items()}
    bound = form.bound.subs(defaults)
    name = "S = D/B" if form.steps else form.quantity
    text = f"{name} {form.op} {float(bound):.4g}"
    if form.steps and form.op in (">=", ">"):
        least = math.floor(bound) + 1 if form.op == ">" else math.ceil(bound)
        text += f" (at least {least} optimizer step{'s' * (least != 1)})"
    why = form.why.format(c=float(c.coefficient.subs(defaults)))
    roles = f" for {compress_roles(c.roles)}" if c.roles else ""
    spread = ""
    hp_syms = sorted(form.bound.free_symbols, key=str)
    if hp_syms:
        corners = []
        for combo in itertools.product(*((ir.hps[str(s)].low, ir.hps[str(s)].high) for s in hp_syms)):
            corners.append(float(form.bound.subs(dict(zip(hp_syms, combo, strict=True)))))
        names = ", ".join(str(s) for s in hp_syms)
        spread = f"; {min(corners):.4g} to {max(corners):.4g} over the search range of {names}"
    return f"{text}: {why}{roles}{spread}"


def region_lines(ir: ParameterisationIR) -> list[str]:
    """The feasible region as `scalec check` / `show` print it: the axis box, then one line per constraint."""
    box = ", ".join(f"{a} in [{_fmt(q.low, a)}, {_fmt(q.high, a)}]" for a, q in ir.axes.items() if q.low is not None)
    return [f"axes {box}"] + [describe(c, ir) for c in ir.constraints]


def derive_region(ir: ParameterisationIR) -> RegionReport:
    """The feasible region's constraints (beyond the axis box) and the warnings; raises RuleError on a failure."""
    return _Analysis(ir).run()


def check_base_in_region(ir: ParameterisationIR, constraints) -> None:
    """The base shape must lie in the region (it can break only the structural step constraint)."""
    for c in constraints:
        defaults = {hp_symbol(k, q.low): q.value for k, q in ir.hps.items()}
        if not _compare(c.coefficient.subs(defaults), c.op, c.limit):
            form = user_form(c, ir)
            name = "S0 = D0/B0" if form.steps else form.quantity
            raise error_at(
                ir,
                (),
                f"the base shape lies outside the feasible region: it needs {name} {form.op} "
                f"{_fmt(form.bound.subs(defaults))} ({form.why.format(c=float(c.coefficient.subs(defaults)))})",
                "move the base inside the region (e.g. --base D=... with D >= B)",
            )


def code_view(ir: ParameterisationIR) -> list[dict]:
    """What the module template's check_shape block prints for each constraint (code as sympy printed it)."""
    from scalec.compiler.codegen import field_name
    from scalec.compiler.printer import RulePrinter

    names = {a: f"shape.{a}" for a in AXES} | {h: f"hp.{field_name(h)}" for h in ir.hps}
    printer = RulePrinter(names, {h: 0 for h in ir.hps} | {a: 1 + i for i, a in enumerate(AXES)})
    views = []
    for c in ir.constraints:
        form = user_form(c, ir)
        have = sympy.Mul(*(sympy.Symbol(a, positive=True) ** e for a, e in form.axes.items()))
        origins = [f"{o.short()} {o.text}" for o in c.origins] or [c.reason]
        views.append(
            dict(
                comments=origins,
                have=printer.doprint(have),
                op=form.op,
                need=printer.doprint(form.bound),
                coefficient=printer.doprint(c.coefficient),
                what="optimizer steps" if form.steps else form.quantity,
                why=form.why,
                axes=tuple(a for a in AXES if a in form.axes),
            )
        )
    return views


__all__ = [
    "derive_region",
    "describe",
    "user_form",
    "UserForm",
    "RegionReport",
    "check_base_in_region",
    "code_view",
    "region_lines",
]
