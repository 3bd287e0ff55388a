"""Print rule expressions as the Python a person would write (and `ruff format` leaves alone).

`1 - (1 - hp.beta1) * m_B / m_D` rather than sympy's `-m_B*(1 - hp.beta1)/m_D + 1`: positive terms first,
hyperparameters before ratios, one fraction bar, square roots merged, constants as float literals.
"""

from __future__ import annotations

import keyword
from collections.abc import Mapping

import sympy
from sympy.core.sorting import default_sort_key
from sympy.printing.precedence import PRECEDENCE, precedence
from sympy.printing.pycode import PythonCodePrinter

_HALF = sympy.Rational(1, 2)


def field_name(name: str) -> str:
    """A Python-safe attribute name: keywords get a trailing underscore."""
    return f"{name}_" if keyword.iskeyword(name) or keyword.issoftkeyword(name) else name


class RulePrinter(PythonCodePrinter):
    """Symbols print through `names` (ratio -> `m_N`, base -> `BASE.n`, hp -> `hp.eta`)."""

    def __init__(self, names: Mapping[str, str], order: Mapping[str, int]):
        super().__init__({"fully_qualified_modules": True, "standard": "python3"})
        self._names = names
        self._order = order  # symbol name -> rank: hps first, then bases, then ratios in axis order

    def value(self, expr: sympy.Expr) -> str:
        """A whole rule's value: a float literal when constant, else the expression."""
        if expr.is_Number:
            return repr(float(expr))
        return self.doprint(expr)

    # atoms --------------------------------------------------------------------------------------
    def _print_Symbol(self, expr):  # noqa: N802 - sympy printer protocol
        return self._names[expr.name]

    def _print_Integer(self, expr):  # noqa: N802
        return str(expr.p)

    def _print_Rational(self, expr):  # noqa: N802
        return f"{expr.p} / {expr.q}"

    def _print_Float(self, expr):  # noqa: N802
        return repr(float(expr))

    # operators ----------------------------------------------------------------------------------
    def _key(self, factor: sympy.Expr):
        ranks = [self._order.get(s.name, 99) for s in factor.free_symbols]
        return (min(ranks, default=-1), default_sort_key(factor))

    def _factor(self, expr: sympy.Expr) -> str:
        text = self._print(expr)
        return f"({text})" if precedence(expr) < PRECEDENCE["Mul"] or text.startswith("-") else text

    def _product(self, factors: list[sympy.Expr], roots: list[sympy.Expr]) -> list[str]:
        parts = [self._factor(f) for f in sorted(factors, key=self._key)]
        if roots:
            parts.append(f"math.sqrt({self._print(sympy.Mul(*roots))})")
        return parts

    def _print_Mul(self, expr):  # noqa: N802
        coeff, factors = expr.as_coeff_mul()
        sign = "-" if coeff < 0 else ""
        coeff = -coeff if coeff < 0 else coeff
        num, den, num_roots, den_roots = [], [], [], []
        for f in factors:
            base, exp = f.as_base_exp()
            if f.is_Pow and exp == _HALF:
                num_roots.append(base)
            elif f.is_Pow and exp == -_HALF:
                den_roots.append(base)
            elif f.is_Pow and exp.is_Rational and exp.is_negative:
                den.append(base**-exp)
            else:
                num.append(f)
        if num_roots and den_roots:
            num_roots, den_roots = [sympy.Mul(*num_roots) / sympy.Mul(*den_roots)], []
        head = [] if coeff == 1 else [str(coeff.p)] if coeff.is_Rational else [self._print(coeff)]
        top = head + self._product(num, num_roots) or ["1"]
        if coeff.is_Rational and coeff.q != 1:
            den.insert(0, sympy.Integer(coeff.q))
            if coeff.p == 1:
                top = top[1:] or ["1"]
        text = sign + " * ".join(top)
        bottom = self._product(den, den_roots)
        if not bottom:
            return text
        below = bottom[0] if len(bottom) == 1 else f"({' * '.join(bottom)})"
        return f"{text} / {below}"

    def _print_Pow(self, expr, rational=False):  # noqa: N802
        base, exp = expr.as_base_exp()
        if exp == _HALF:
            return f"math.sqrt({self._print(base)})"
        if exp.is_Rational and exp.is_negative:
            return self._print_Mul(sympy.Mul(sympy.Integer(1), expr, evaluate=False))
        b = self._print(base)
        if precedence(base) <= PRECEDENCE["Pow"] or b.startswith("-") or base.is_Rational and not base.is_Integer:
            b = f"({b})"
        e = self._print(exp)
        if exp.is_Integer and (base.is_Symbol or base.is_Integer):
            return f"{b}**{e}"
        return f"{b} ** ({e})" if not exp.is_Integer else f"{b} ** {e}"

    def _print_Add(self, expr, order=None):  # noqa: N802
        terms = list(expr.as_ordered_terms())
        positive = [t for t in terms if not t.could_extract_minus_sign()]
        negative = [t for t in terms if t.could_extract_minus_sign()]
        positive.sort(key=lambda t: not t.is_Number)
        out = ""
        for t in positive + negative:
            if not out:
                out = self._print(t)
            elif t in negative:
                out += f" - {self._factor(-t) if (-t).is_Add else self._print(-t)}"
            else:
                out += f" + {self._print(t)}"
        return out
