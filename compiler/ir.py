"""The compiler's intermediate representation: per role x HP kind a sympy expression, plus sites."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import sympy

from scalec.dsl.ast import Loc

if TYPE_CHECKING:
    from scalec.compiler.profile import Profile


@dataclass(frozen=True)
class Origin:
    """Where a rule came from: file, line and the statement's text (for comments and messages)."""

    path: str
    line: int
    text: str

    def short(self) -> str:
        return f"{self.path.rsplit('/', 1)[-1]}:{self.line}"


@dataclass(frozen=True)
class Rule:
    """The resolved value of one HP (or site) as a sympy expression, with every rule that shaped it."""

    expr: sympy.Expr
    origins: tuple[Origin, ...]


@dataclass(frozen=True)
class Quantity:
    """A declared axis, hp or param: base/default value, range and (for hps) search scale."""

    name: str
    value: sympy.Rational
    low: sympy.Rational | None
    high: sympy.Rational | None
    scale: str | None
    loc: Loc
    doc: str = ""


@dataclass(frozen=True)
class Constraint:
    """A derived condition on the run shape, linear in log space: `coefficient * prod(m_a^e) op limit`.

    E.g. Complete(d)P's `1-beta1 = (1-beta1) * m_B/m_D <= 1` (beta1 >= 0), i.e. steps S >= S0 * (1-beta1).
    The coefficient is in hp symbols (base values substituted); compiler/region.py writes it in the user's terms.
    """

    subject: str  # what is bounded: "1-beta1", "beta2", "S"
    coefficient: sympy.Expr
    exponents: tuple[tuple[str, sympy.Rational], ...]  # (axis, exponent of its ratio), non-zero only
    op: str  # "<=" | "<" | ">=" | ">"
    limit: sympy.Rational
    reason: str  # the domain it protects ("0 <= beta1 < 1") or why it holds ("a run takes one step")
    roles: tuple[str, ...] = ()
    origins: tuple[Origin, ...] = ()


@dataclass
class ParameterisationIR:
    """Everything the checks and the code generator need about one resolved parameterisation."""

    name: str
    lineage: tuple[str, ...]
    paths: tuple[str, ...]
    sources: tuple[str, ...]
    docs: list[str] = field(default_factory=list)
    cites: list[str] = field(default_factory=list)
    axes: dict[str, Quantity] = field(default_factory=dict)
    hps: dict[str, Quantity] = field(default_factory=dict)
    params: dict[str, Quantity] = field(default_factory=dict)
    groups: dict[str, tuple[str, ...]] = field(default_factory=dict)
    roles: dict[str, dict[str, Rule]] = field(default_factory=dict)
    sites: dict[str, Rule] = field(default_factory=dict)
    # Word-valued settings per role: optimizer (compiler/optimizers.py), decay convention and the optimizer's own.
    settings: dict[str, dict[str, str]] = field(default_factory=dict)
    # The root file's rules: "identity at the base shape" compares against these.
    root_roles: dict[str, dict[str, Rule]] = field(default_factory=dict)
    root_sites: dict[str, Rule] = field(default_factory=dict)
    root_settings: dict[str, dict[str, str]] = field(default_factory=dict)
    header_loc: Loc | None = None
    source_sha256: str = ""
    # Depth profiles by name (compiler/profile.py); their knots NAME_k are hps.
    profiles: dict[str, Profile] = field(default_factory=dict)
    # The feasible region beyond the axis box (derived by compiler/region.py; enforced by the module's check_shape).
    constraints: tuple[Constraint, ...] = ()

    def optimizer(self, role: str) -> str:
        """The optimizer a role uses (default adamw)."""
        return self.settings.get(role, {}).get("optimizer", "adamw")

    def decay(self, role: str) -> str:
        """A role's weight-decay convention: coupled (torch, shrink lr*wd per step) or independent."""
        return self.settings.get(role, {}).get("decay", "coupled")
