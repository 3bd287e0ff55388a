"""Exact analysis of one expression over the axis box: monomials, signs, zeros and poles.

An expression in the ratios m_a (and hps) is a monomial `C * prod m_a^e` or it is not; otherwise its sign over the
box is proven with a rigorous interval enclosure (mpmath.iv), or with sympy's exact real roots and poles when it
depends on the ratios through one monomial, or refuted by a witness point on a log grid; what none of these decides
is returned as undecided, never as a pass.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import sympy
from mpmath import iv

from scalec.compiler.exponents import monomial_exponents
from scalec.compiler.symbols import RATIO, RATIO_SYMBOLS

AXIS_OF: dict[sympy.Symbol, str] = {r: a for a, r in RATIO.items()}


@dataclass(frozen=True)
class Sign:
    """Sign of an expression over the box: `ok` (proven), or a witness of what breaks, or undecided."""

    ok: bool
    point: dict | None = None  # ratio symbol -> value where it breaks
    value: object = None  # the value there (0, a negative number, "infinite", "not real")
    undecided: bool = False


class BoxAnalysis:
    """The axis box (ratio symbol -> [lo, hi]) with the hps' defaults and search ranges (hp symbol -> [low, high])."""

    def __init__(self, box: dict, defaults: dict, hp_ranges: dict):
        self.box = box
        self.defaults = defaults
        self.hp_ranges = hp_ranges

    def log_range(self, exps) -> tuple[sympy.Expr, sympy.Expr]:
        """Min and max over the box of prod m_a^e."""
        lo = hi = sympy.Integer(1)
        for a, e in exps:
            b_lo, b_hi = self.box[RATIO[a]]
            x, y = b_lo**e, b_hi**e
            lo, hi = lo * min(x, y, key=float), hi * max(x, y, key=float)
        return lo, hi

    def monomial(self, expr: sympy.Expr):
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
        mono = ratio_monomial(tuple((a, e) for a, e in exps.items() if e != 0))
        coef = sympy.powsimp(sympy.expand_power_base(expr / mono, force=True), force=True)
        if coef.free_symbols & RATIO_SYMBOLS:
            coef = sympy.simplify(coef)
            if coef.free_symbols & RATIO_SYMBOLS:
                return None
        return coef, tuple((a, e) for a, e in exps.items() if e != 0)

    def at_defaults(self, e: sympy.Expr) -> sympy.Expr:
        """`e` with every hp at its default."""
        return e.xreplace(self.defaults) if e.free_symbols else e

    def enclose(self, e: sympy.Expr, hp_ranges: bool):
        """A rigorous interval enclosure of `e` (mpmath.iv) over the box and hp ranges/defaults; None if unknown."""
        env = {}
        for s in e.free_symbols:
            if s in self.box:
                lo, hi = self.box[s]
                env[s] = iv.mpf([_iv(lo).a, _iv(hi).b])
            elif s in self.hp_ranges:
                low, high = self.hp_ranges[s]
                env[s] = iv.mpf([_iv(low).a, _iv(high).b]) if hp_ranges else _iv(self.defaults[s])
            else:
                return None
        try:
            return _enclose(e, env)
        except (ValueError, ZeroDivisionError, TypeError, OverflowError):
            return None

    def sign(self, g: sympy.Expr, strict: str | None) -> Sign:
        """Prove `g > 0` ("strict"), `g >= 0` ("weak"), `g != 0` ("nonzero") or finite (None) over the box (g free
        of hps); otherwise return a witness or `undecided`."""
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
        if enclosure_ok(enc, strict):
            return Sign(True)
        one = self.one_dim(g)
        if one is not None:
            found = self.roots_1d(*one, strict)
            if found is not None:
                return found
        return self.grid(g, strict)

    def one_dim(self, g: sympy.Expr):
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

    def roots_1d(self, f, u, lo, hi, to_point, strict) -> Sign | None:
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
            return Sign(False, to_point(p), "infinite")
        cuts = sorted(set(zeros) | {lo, hi}, key=float)
        samples = list(cuts) + [(x + y) / 2 for x, y in itertools.pairwise(cuts)]
        for p in samples:  # zeros and the box's ends first: they make the plainest witnesses
            value = f.subs(u, p).evalf(30)
            if value.is_real is False or value.has(sympy.I):
                return Sign(False, to_point(p), "not real")
            if not _value_ok(value, strict):
                return Sign(False, to_point(p), 0 if p in zeros else value)
        return Sign(True)

    def grid(self, g: sympy.Expr, strict) -> Sign:
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
                return Sign(False, point, "infinite")
            if value.is_real is False or value.has(sympy.I):
                return Sign(False, point, "not real")
            if not _value_ok(value, strict):
                return Sign(False, point, value)
        return Sign(False, undecided=True, value=g)


def ratio_monomial(exps) -> sympy.Expr:
    """prod m_a^e for ((axis, exponent), ...)."""
    return sympy.Mul(*(RATIO[a] ** e for a, e in exps))


def enclosure_ok(enc, strict: str | None) -> bool:
    """Does the enclosure prove the sign (see `BoxAnalysis.sign`)? None (no enclosure) proves nothing."""
    if enc is None:
        return False
    if strict == "strict":
        return enc.a > 0
    if strict == "weak":
        return enc.a >= 0
    if strict == "nonzero":
        return enc.a > 0 or enc.b < 0
    return math.isfinite(float(enc.a)) and math.isfinite(float(enc.b))


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


def _value_ok(value, strict) -> bool:
    if strict == "strict":
        return value > 0
    if strict == "weak":
        return value >= 0
    if strict == "nonzero":
        return value != 0
    return True


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
