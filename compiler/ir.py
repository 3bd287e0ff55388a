"""The compiler's intermediate representation: per role x HP kind a sympy expression, plus sites."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import sympy

from scalec.compiler.vocabulary import BLOCK_ROLES, BUNDLED_VOCAB, DEFAULT_FANS, ROLES
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


# A role's kind (what its dims are, Tensor Programs' width classes) as a rule file names it, and back.
KIND_OF_CLASS: dict[str, str] = {"input": "embedding", "hidden": "hidden", "output": "readout", "vector": "vector"}
CLASS_OF_KIND: dict[str, str] = {k: c for c, k in KIND_OF_CLASS.items()}
ROLE_KINDS: tuple[str, ...] = tuple(CLASS_OF_KIND)


@dataclass(frozen=True)
class RoleInfo:
    """A role's kind (embedding: fixed -> width, hidden: width -> width, readout: width -> fixed, vector: width) and
    placement (inside the residual blocks or not); `declared` is where a rule file declared it (None: bundled)."""

    kind: str
    in_blocks: bool
    declared: Loc | None = None
    # For a declared role: (target, how its default rule was derived), e.g. ("lr", "lr of unembed x m_L^(alpha-1)").
    derivation: tuple[tuple[str, str], ...] = ()

    @property
    def width_class(self) -> str:
        """The Tensor Programs width class (input / hidden / output / vector) the analysis and runtime use."""
        return CLASS_OF_KIND[self.kind]


# Fans of a declared role at the bundled shapes, by kind: ((constant, width exponent) of fan_in, of fan_out); a
# model's own tensors bring their real fans (a conv kernel's fan_in = C_in * k * k).
FANS_OF_KIND: dict[str, tuple[tuple[int, int], tuple[int, int]]] = {
    "embedding": ((BUNDLED_VOCAB, 0), (1, 1)),
    "hidden": ((1, 1), (1, 1)),
    "readout": ((1, 1), (BUNDLED_VOCAB, 0)),
    "vector": ((1, 0), (1, 1)),
}


def bundled_role_table() -> dict[str, RoleInfo]:
    """The bundled transformer roles (compiler/vocabulary.py) with their kinds and placement."""
    return {r: RoleInfo(KIND_OF_CLASS[c], r in BLOCK_ROLES) for r, c in ROLES.items()}


@dataclass(frozen=True)
class Expectation:
    """`expect AREA: LEVEL` of a rule file: what the parameterisation must satisfy (compiler/expectations.py)."""

    area: str
    level: str
    loc: Loc


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
    # Every role (bundled, then declared by `new role NAME: KIND [in blocks]`) with its kind and placement.
    role_table: dict[str, RoleInfo] = field(default_factory=bundled_role_table)
    # `expect AREA: LEVEL` by area; a child's declaration replaces its parent's for that area.
    expectations: dict[str, Expectation] = field(default_factory=dict)

    def optimizer(self, role: str) -> str:
        """The optimizer a role uses (default adamw)."""
        return self.settings.get(role, {}).get("optimizer", "adamw")

    def role_kinds(self) -> dict[str, tuple[str, bool]]:
        """{role: (kind, in_blocks)} for every role: plain data for `derive`, the module's ROLE_KINDS and reports."""
        return {r: (info.kind, info.in_blocks) for r, info in self.role_table.items()}

    def fans(self, role: str) -> tuple[tuple[int, int], tuple[int, int]]:
        """A role's (fan_in, fan_out) at the bundled shapes as (constant, width exponent) pairs."""
        return DEFAULT_FANS[role] if role in DEFAULT_FANS else FANS_OF_KIND[self.role_table[role].kind]

    def width_class(self, role: str) -> str:
        """A role's Tensor Programs width class: input, hidden, output or vector."""
        return self.role_table[role].width_class

    def block_roles(self) -> frozenset[str]:
        """The roles inside the residual blocks."""
        return frozenset(r for r, info in self.role_table.items() if info.in_blocks)

    def decay(self, role: str) -> str:
        """A role's weight-decay convention: coupled (torch, shrink lr*wd per step) or independent."""
        return self.settings.get(role, {}).get("decay", "coupled")
