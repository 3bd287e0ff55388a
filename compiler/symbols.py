"""Sympy symbols of the rule language and the AST -> sympy conversion with located errors."""

from __future__ import annotations

import math
from collections.abc import Mapping

import sympy

from scalec.compiler.profile import DepthProfile, Profile
from scalec.compiler.vocabulary import AXES, BUILTIN_FUNCTIONS, TENSOR_SYMBOLS
from scalec.dsl import ast
from scalec.dsl.errors import RuleError, did_you_mean

RATIO: dict[str, sympy.Symbol] = {a: sympy.Symbol(r, positive=True) for a, r in AXES.items()}
BASE: dict[str, sympy.Symbol] = {a: sympy.Symbol(f"{a}0", positive=True) for a in AXES}
RATIO_SYMBOLS: frozenset[sympy.Symbol] = frozenset(RATIO.values())
ONES: dict[sympy.Symbol, int] = {s: 1 for s in RATIO.values()}
# Per-tensor symbols of role rules: the tensor's fans and its block index (0-based).
FAN_IN = sympy.Symbol("fan_in", positive=True)
FAN_OUT = sympy.Symbol("fan_out", positive=True)
LAYER = sympy.Symbol("l", integer=True, nonnegative=True)
TENSOR = frozenset({FAN_IN, FAN_OUT, LAYER})


def role_rule_names() -> dict[str, sympy.Expr]:
    """Names role rules may use on top of `builtin_names()`: fan_in, fan_out and the block index l."""
    return {"fan_in": FAN_IN, "fan_out": FAN_OUT, "l": LAYER}


def hp_symbol(name: str, low=None) -> sympy.Symbol:
    """The symbol of a tunable HP (positive when its range is)."""
    if low is not None and low > 0:
        return sympy.Symbol(name, positive=True)
    return sympy.Symbol(name, nonnegative=True)


def param_symbol(name: str) -> sympy.Symbol:
    return sympy.Symbol(name, real=True)


def builtin_names() -> dict[str, sympy.Expr]:
    """Names every rule file can use: ratios, absolute axes, bases, training steps."""
    names: dict[str, sympy.Expr] = {}
    for a, ratio in RATIO.items():
        names[str(ratio)] = ratio
        names[a] = BASE[a] * ratio
        names[f"{a}0"] = BASE[a]
    names["S"] = names["D"] / names["B"]
    names["S0"] = BASE["D"] / BASE["B"]
    names["m_S"] = RATIO["D"] / RATIO["B"]
    return names


def _ratio_power_product(e: sympy.Expr) -> bool:
    """Is `e` a product of ratio powers with rational exponents (and a positive rational factor)?"""
    for factor in sympy.Mul.make_args(e):
        base, exp = factor.as_base_exp()
        if factor.is_Rational and factor > 0:
            continue
        if base not in RATIO_SYMBOLS or not exp.is_Rational:
            return False
    return True


_FUNCS = {"sqrt": sympy.sqrt, "min": sympy.Min, "max": sympy.Max}

# Bounds (README "Limits"): every number lies in [1e-300, 1e300] (or is 0), every exponent is a rational p/q with
# |p/q| <= MAX_EXPONENT and q <= MAX_EXPONENT; checked before sympy computes a power.
MAX_MAGNITUDE = 300  # decimal orders of magnitude
MAX_EXPONENT = 1024


def bounded_rational(text: str) -> sympy.Rational:
    """An exact rational from a short decimal or fraction text (`0.5`, `1/2`, `1e-3`); ValueError when out of range."""
    text = text.strip()
    if not text:
        raise ValueError("an empty value is not a number")
    if len(text) > 64:
        raise ValueError(f"{text[:24]!r}... is too long for a number")
    for part in text.split("/", 1):
        _, _, exp = part.lower().partition("e")
        if exp and (len(exp) > 5 or abs(int(exp)) > 400):
            raise ValueError(f"{text!r} is out of range")
    try:
        value = sympy.Rational(text)
    except (TypeError, ValueError, SyntaxError, ZeroDivisionError, sympy.SympifyError):
        raise ValueError(f"{text!r} is not a number") from None
    if not _magnitude_ok(value):
        raise ValueError(f"{text!r} is out of range: magnitudes lie within [1e-{MAX_MAGNITUDE}, 1e{MAX_MAGNITUDE}]")
    return value


def _magnitude_ok(value: sympy.Expr) -> bool:
    """A constant's magnitude lies within [1e-300, 1e300] (or it is 0); cheap for huge rationals."""
    if value == 0:
        return True
    if value.is_Rational:
        p, q = abs(int(value.p)), int(value.q)
        if p.bit_length() > 4096 or q.bit_length() > 4096:
            return False
        order = (p.bit_length() - q.bit_length()) * 0.30103
        return abs(order) <= MAX_MAGNITUDE + 1 and 10.0**-MAX_MAGNITUDE <= abs(float(value)) <= 10.0**MAX_MAGNITUDE
    try:
        mag = abs(float(value))
    except (TypeError, ValueError, OverflowError):
        return False
    return 10.0**-MAX_MAGNITUDE <= mag <= 10.0**MAX_MAGNITUDE


class ExprConverter:
    """Converts AST expressions to sympy in a scope of names; every error is located."""

    def __init__(
        self,
        scope: Mapping[str, sympy.Expr],
        params: Mapping[str, sympy.Rational],
        source: str,
        what: str = "expression",
        ratio_exponents: bool = False,
        profiles: Mapping[str, Profile] | None = None,
    ):
        self.scope = scope
        self.profiles = profiles or {}  # depth profiles (compiler/profile.py): `NAME(l)` in role rules
        self.params = params  # param symbol name -> value, for the exponent-rationality check
        self.source = source
        self.what = what
        # Beta rules may raise to a product of ratio powers: the half-life form `beta1^(m_B/m_D)`.
        self.ratio_exponents = ratio_exponents

    def error(self, loc: ast.Loc, message: str, hint: str | None = None) -> RuleError:
        return RuleError(loc, message, hint, self.source)

    def __call__(self, e: ast.Expr) -> sympy.Expr:
        out = self._convert(e)
        if out.has(sympy.zoo, sympy.nan, sympy.oo, -sympy.oo):
            raise self.error(e.loc, f"{self.what} is undefined (division by zero?)")
        for p in out.atoms(sympy.Pow):  # exponents grown by multiplying lets (`let b = a * a`)
            if p.exp.is_Rational and not self._exponent_ok(p.exp):
                raise self.error(
                    e.loc, f"{self.what} has an exponent beyond +-{MAX_EXPONENT}", "keep exponents to small fractions"
                )
        return out

    @staticmethod
    def _exponent_ok(exp: sympy.Rational) -> bool:
        return abs(exp.p) <= MAX_EXPONENT * exp.q and exp.q <= MAX_EXPONENT

    def _number(self, value: sympy.Expr, loc: ast.Loc) -> sympy.Expr:
        if value.is_number and not _magnitude_ok(value):
            raise self.error(
                loc,
                "number out of range",
                f"magnitudes must lie within [1e-{MAX_MAGNITUDE}, 1e{MAX_MAGNITUDE}] (or be 0)",
            )
        return value

    def _convert(self, e: ast.Expr) -> sympy.Expr:
        return self._number(self._convert_node(e), e.loc)

    def _convert_node(self, e: ast.Expr) -> sympy.Expr:
        if isinstance(e, ast.Num):
            return sympy.Rational(e.text)
        if isinstance(e, ast.Name):
            if e.id in self.scope:
                return self.scope[e.id]
            self._not_a_profile(e)
            if e.id in TENSOR_SYMBOLS:
                raise self.error(
                    e.loc,
                    f"'{e.id}' is not available in rule expressions",
                    "write width scaling with the ratio m_N (e.g. `init_var *= m_N^-1`)",
                )
            raise self.error(
                e.loc,
                f"unknown name '{e.id}'",
                did_you_mean(e.id, self.scope) or "declare it with `hp`, `param` or `let` before use",
            )
        if isinstance(e, ast.Neg):
            return -self._convert(e.operand)
        if isinstance(e, ast.Call):
            if e.func in self.profiles:
                return self._profile(e)
            if e.func not in BUILTIN_FUNCTIONS or e.func not in _FUNCS:
                raise self.error(
                    e.loc,
                    f"unknown function '{e.func}'",
                    did_you_mean(e.func, [*_FUNCS, *self.profiles]) or f"available: {', '.join(sorted(_FUNCS))}",
                )
            arity = BUILTIN_FUNCTIONS[e.func]
            if len(e.args) != arity:
                raise self.error(e.loc, f"{e.func}() takes {arity} argument{'s' * (arity != 1)}, got {len(e.args)}")
            return _FUNCS[e.func](*(self._convert(a) for a in e.args))
        assert isinstance(e, ast.BinOp)
        left, right = self._convert(e.left), self._convert(e.right)
        if e.op == "+":
            return left + right
        if e.op == "-":
            return left - right
        if e.op == "*":
            return left * right
        if e.op == "/":
            if right == 0:
                raise self.error(e.loc, "division by zero")
            return left / right
        self._check_exponent(e.right, right)
        if left == 0 and (right.is_negative or right == 0):
            raise self.error(e.loc, "0 raised to a non-positive power")
        if left.is_number and right.is_number and left != 0:
            order = abs(math.log10(abs(float(left)))) * abs(float(right))
            if order > MAX_MAGNITUDE:
                raise self.error(
                    e.loc,
                    f"power of about 1e{'-' if (float(right) > 0) != (abs(float(left)) > 1) else ''}{order:.0f} "
                    "is out of range",
                    f"magnitudes must lie within [1e-{MAX_MAGNITUDE}, 1e{MAX_MAGNITUDE}]",
                )
        return left**right

    def _profile(self, e: ast.Call) -> sympy.Expr:
        """`NAME(l)`: the profile's value at the tensor's block (role rules only)."""
        p = self.profiles[e.func]
        if self.scope.get("l") is not LAYER:
            raise self.error(
                e.loc,
                f"depth profile '{p.name}' varies per block: only role rules may use it",
                f"use it in a role rule for roles inside blocks, e.g. `role hidden: lr *= {p.name}(l)`",
            )
        if len(e.args) != 1 or not (isinstance(e.args[0], ast.Name) and e.args[0].id == "l"):
            raise self.error(
                e.loc,
                f"depth profile '{p.name}' takes the block index: write {p.name}(l)",
                "block l of L sits at relative depth (l + 1/2)/L; the knots carry the shape of the profile",
            )
        knots = (hp_symbol(k, p.low) for k in p.knots)
        return DepthProfile(LAYER, BASE["L"] * RATIO["L"], *knots)

    def _not_a_profile(self, e: ast.Name) -> None:
        """A profile or one of its knots named without the call `NAME(l)`: a located error saying so."""
        for p in self.profiles.values():
            if e.id == p.name or e.id in p.knots:
                what = f"a depth profile of {len(p.knots)} knot{'s' * (len(p.knots) != 1)}"
                if e.id != p.name:
                    what = f"a knot of depth profile '{p.name}'"
                raise self.error(
                    e.loc,
                    f"'{e.id}' is {what}; rules use the profile's value at the block: {p.name}(l)",
                    f"write e.g. `role hidden: lr *= {p.name}(l)`",
                )

    def _check_exponent(self, node: ast.Expr, exponent: sympy.Expr) -> None:
        """Exponents must be exact rationals (params such as alpha allowed) so exponents can be reasoned about."""
        free = {s for s in exponent.free_symbols if str(s) not in self.params}
        if free and self.ratio_exponents and free <= RATIO_SYMBOLS and _ratio_power_product(exponent):
            return
        if free:
            names = ", ".join(sorted(str(s) for s in free))
            hint = "exponents may use numbers and `param`s only (e.g. `m_L^(alpha-1)`)"
            if free <= RATIO_SYMBOLS:
                hint = "only beta rules may raise to a product of ratio powers (half-life form `beta1^(m_B/m_D)`)"
            raise self.error(node.loc, f"exponent is not an exact rational: it depends on {names}", hint)
        value = exponent.subs({sympy.Symbol(k, real=True): v for k, v in self.params.items()})
        if not value.is_Rational:
            raise self.error(
                node.loc, f"exponent {value} is not an exact rational", "write exponents as fractions such as 1/2"
            )
        if not self._exponent_ok(value):
            raise self.error(
                node.loc,
                f"exponent {_short(value)} is out of range",
                f"exponents are fractions p/q with |p/q| <= {MAX_EXPONENT} and q <= {MAX_EXPONENT}",
            )


def _short(value: sympy.Rational) -> str:
    text = str(value) if max(value.p.bit_length(), value.q.bit_length()) < 200 else f"~2^{value.p.bit_length()}"
    return text if len(text) <= 30 else text[:27] + "..."
