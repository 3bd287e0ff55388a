"""Typed AST of a rule file: frozen dataclasses, each carrying its source location (ignored by ==)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Loc:
    """A position in a rule file (1-based line and column)."""

    path: str
    line: int
    col: int
    end_line: int = 0
    end_col: int = 0


NOWHERE = Loc("<generated>", 0, 0)


def _loc() -> Loc:
    return field(default=NOWHERE, compare=False, repr=False)


# ---- expressions -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Num:
    text: str
    loc: Loc = _loc()


@dataclass(frozen=True)
class Name:
    id: str
    loc: Loc = _loc()


@dataclass(frozen=True)
class BinOp:
    op: str  # one of + - * / ^
    left: Expr
    right: Expr
    loc: Loc = _loc()


@dataclass(frozen=True)
class Neg:
    operand: Expr
    loc: Loc = _loc()


@dataclass(frozen=True)
class Call:
    func: str
    args: tuple[Expr, ...]
    loc: Loc = _loc()


Expr = Num | Name | BinOp | Neg | Call


@dataclass(frozen=True)
class Range:
    low: Expr
    high: Expr
    loc: Loc = _loc()


# ---- statements --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Docstring:
    text: str
    loc: Loc = _loc()


@dataclass(frozen=True)
class Cite:
    text: str
    loc: Loc = _loc()


@dataclass(frozen=True)
class AxisDecl:
    name: str
    base: Expr
    range: Range | None
    loc: Loc = _loc()


@dataclass(frozen=True)
class HPDecl:
    name: str
    default: Expr
    range: Range | None
    scale: str | None  # "log" | "linear" | None (= log when the range is positive)
    knots: int | None = None  # a depth profile of K knots (`knots K`), used as NAME(l) in role rules
    loc: Loc = _loc()


@dataclass(frozen=True)
class ParamDecl:
    name: str
    value: Expr
    range: Range | None
    loc: Loc = _loc()


@dataclass(frozen=True)
class LetDecl:
    name: str
    value: Expr
    loc: Loc = _loc()


@dataclass(frozen=True)
class Pattern:
    text: str  # a role, a group name, a glob like `attn.*`, or `*`
    loc: Loc = _loc()


@dataclass(frozen=True)
class GroupDecl:
    name: str
    patterns: tuple[Pattern, ...]
    loc: Loc = _loc()


@dataclass(frozen=True)
class Target:
    kind: str  # lr, init_std, init_var, eps, ...
    one_minus: bool = False  # written as `1-beta1`
    loc: Loc = _loc()

    def __str__(self) -> str:
        return f"1-{self.kind}" if self.one_minus else self.kind


@dataclass(frozen=True)
class Assignment:
    target: Target
    op: str  # "=" or "*="
    value: Expr
    loc: Loc = _loc()


@dataclass(frozen=True)
class RoleRule:
    patterns: tuple[Pattern, ...]
    assignments: tuple[Assignment, ...]
    loc: Loc = _loc()


@dataclass(frozen=True)
class SiteRule:
    sites: tuple[Pattern, ...]
    op: str
    value: Expr
    loc: Loc = _loc()


@dataclass(frozen=True)
class RoleDecl:
    """`new role NAME: KIND [in blocks]`."""

    name: str
    kind: str  # embedding | hidden | readout | vector (checked by the resolver)
    in_blocks: bool
    loc: Loc = _loc()
    kind_loc: Loc = _loc()


@dataclass(frozen=True)
class Expect:
    """One `AREA: LEVEL` of an `expect` statement."""

    area: str
    level: str
    loc: Loc = _loc()
    level_loc: Loc = _loc()


@dataclass(frozen=True)
class ExpectDecl:
    """`expect AREA: LEVEL; ...`."""

    items: tuple[Expect, ...]
    loc: Loc = _loc()


Statement = (
    Docstring | Cite | AxisDecl | HPDecl | ParamDecl | LetDecl | GroupDecl | RoleRule | SiteRule | RoleDecl | ExpectDecl
)


@dataclass(frozen=True)
class RuleFile:
    """One parsed `.scale` file."""

    name: str
    parent: str | None
    statements: tuple[Statement, ...]
    path: str = field(default="<string>", compare=False)
    source: str = field(default="", compare=False, repr=False)
    name_loc: Loc = _loc()
    parent_loc: Loc = _loc()
