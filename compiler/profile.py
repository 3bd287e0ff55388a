"""Depth profiles (`hp NAME = 1 in [lo, hi] log knots K`, used as `NAME(l)` in role rules).

Complete(d)P (Mlodozeniec et al. 2025, arXiv 2512.22382) factorises a per-module HP as type x depth profile x
SDE x CompleteP factors; the depth profile is a function of relative depth, so values tuned at one depth carry
over to another. Here a profile has K knots, knot k at relative depth u_k = k/(K-1) (K = 1: one constant); block l
(0-based) of L sits at u = (l + 1/2)/L, and its value interpolates the two neighbouring knots linearly in log
space (constant beyond the end knots). Each knot is a tunable HP `NAME_k` with the declared range and log scale.

The rules hold `NAME(l)` as a DepthProfile(l, L, knot_0, ..., knot_K-1) application, so code generation sees
the block index and the knots. The analyses see it as what it is: a value inside [lo, hi] of the declared range,
positive and Theta(1) on every axis (`flatten`); the identity at the base shape takes every knot at its default
(`at_defaults`).
"""

from __future__ import annotations

import keyword
from dataclasses import dataclass

import sympy

from scalec.compiler.ir import Quantity
from scalec.dsl.ast import Loc


@dataclass(frozen=True)
class Profile:
    """A declared depth profile: its knots' HP names (`lr_depth_0`, ...) and their shared default and range."""

    name: str
    knots: tuple[str, ...]
    default: sympy.Rational
    low: sympy.Rational
    high: sympy.Rational
    loc: Loc

    @property
    def value_name(self) -> str:
        """How the analyses name a block's value: `lr_depth(l)`."""
        return f"{self.name}(l)"

    @property
    def value_symbol(self) -> sympy.Symbol:
        """A block's value as the analyses see it: positive, bounded by the declared range."""
        return sympy.Symbol(self.value_name, positive=True)

    @property
    def quantity(self) -> Quantity:
        """A block's value as a bounded quantity (default and range of every knot) for the region analysis."""
        return Quantity(self.value_name, self.default, self.low, self.high, "log", self.loc)


def knot_names(name: str, count: int) -> tuple[str, ...]:
    """The tunable HP of each knot: `lr_depth_0`, `lr_depth_1`, ..."""
    return tuple(f"{name}_{k}" for k in range(count))


class DepthProfile(sympy.Function):
    """`NAME(l)` in a rule: DepthProfile(l, L, knot_0, ..., knot_K-1), positive; prints as `NAME(l)` and as
    `depth_profile(hp.NAME, layer, BASE.L * m_L)` in the generated module (hp.NAME: the tuple of knot values)."""

    is_positive = True
    is_real = True
    is_finite = True

    @property
    def profile_name(self) -> str:
        return str(self.args[2]).rsplit("_", 1)[0]

    def _sympystr(self, printer) -> str:
        return f"{self.profile_name}(l)"

    def _pythoncode(self, printer) -> str:
        layer, depth = (printer._print(a) for a in self.args[:2])
        name = self.profile_name
        field = f"{name}_" if keyword.iskeyword(name) or keyword.issoftkeyword(name) else name  # as codegen's
        return f"depth_profile(hp.{field}, {layer}, {depth})"  # hp.NAME: the knots' tuple (generated property)


def flatten(expr: sympy.Expr) -> sympy.Expr:
    """Every profile value as its bounded positive symbol `NAME(l)` (Theta(1) on every axis)."""
    if not expr.has(DepthProfile):
        return expr
    return expr.replace(lambda e: isinstance(e, DepthProfile), lambda e: sympy.Symbol(str(e), positive=True))


def at_defaults(expr: sympy.Expr, profiles: dict[str, Profile]) -> sympy.Expr:
    """Every profile at its default: all knots equal, so every block's value is the default."""
    if not expr.has(DepthProfile):
        return expr
    return expr.replace(
        lambda e: isinstance(e, DepthProfile), lambda e: sympy.Rational(profiles[e.profile_name].default)
    )


def value_symbols(profiles: dict[str, Profile]) -> dict[sympy.Symbol, Profile]:
    """The analyses' symbol of each profile."""
    return {p.value_symbol: p for p in profiles.values()}
