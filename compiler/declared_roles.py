"""Default rules of a declared role (`new role NAME: KIND [in blocks]`) under the file's theory so far.

Width rules come from the bundled roles of the same kind (the prototypes: `embed`, the hidden matrices, `unembed`,
the width-sized gains and biases), with the forward site that acts on the prototype (`output.mult`,
`embed.mult`) moved into the new role's own multiplier.  Depth rules come from the placement: a role inside the
residual blocks takes the in-block roles' m_L factors (CompleteP: lr m_L^(alpha-1), eps m_L^-alpha), a role outside
them the outside roles'.  Batch and duration rules ride along with the prototype's (the file's `role *` rules).
When the prototypes disagree on an exponent the theory cannot decide the role, and `UndecidedRole` says which.
"""

from __future__ import annotations

import sympy

from scalec.compiler.exponents import monomial_exponents, one_minus, per_role
from scalec.compiler.ir import FANS_OF_KIND, Origin, ParameterisationIR, RoleInfo, Rule
from scalec.compiler.symbols import LAYER, RATIO
from scalec.compiler.vocabulary import SITE_OF_ROLE, compress_roles

ONE_MINUS = frozenset({"beta1", "beta2", "momentum"})


class UndecidedRole(Exception):
    """The theory (the bundled roles' rules) cannot decide a declared role's rule."""

    def __init__(self, message: str, hint: str):
        super().__init__(message)
        self.message, self.hint = message, hint


def _width_sized(ir: ParameterisationIR, role: str, kind: str) -> bool:
    """Does a bundled role have the dims its kind has at width (QK-norm gains are head-sized, not width-sized)?"""
    (_, ei), (_, eo) = ir.fans(role)
    (_, ki), (_, ko) = FANS_OF_KIND[kind]
    return (ei, eo) == (ki, ko)


def prototypes(ir: ParameterisationIR, info: RoleInfo) -> tuple[list[str], list[str]]:
    """(width prototypes, placement prototypes): bundled roles of the same kind (same placement when some are),
    and bundled width-sized roles with the same placement."""
    bundled = [r for r, i in ir.role_table.items() if i.declared is None and r in ir.roles]
    kind = [r for r in bundled if ir.role_table[r].kind == info.kind and _width_sized(ir, r, info.kind)]
    same = [r for r in kind if ir.role_table[r].in_blocks == info.in_blocks]
    placed = [
        r
        for r in bundled
        if ir.role_table[r].in_blocks == info.in_blocks and _width_sized(ir, r, ir.role_table[r].kind)
    ]
    return (same or kind), placed


def _exponents(ir: ParameterisationIR, role: str, kind: str, expr: sympy.Expr) -> dict | None:
    e = per_role(expr, role, ir.fans(role))
    return monomial_exponents(one_minus(e) if kind in ONE_MINUS else e)


def _same(x, y) -> bool:
    return sympy.simplify(x - y) == 0


def _agreed(ir: ParameterisationIR, roles: list[str], kind: str, axes: tuple[str, ...], name: str, what: str):
    """The common exponents of `kind` over `axes` among `roles` (those that have the target), or UndecidedRole."""
    found: dict[str, tuple[str, dict]] = {}
    for r in roles:
        rule = ir.roles[r].get(kind)
        if rule is None:
            continue
        expr = rule.expr * ir.sites[SITE_OF_ROLE[r]].expr if kind == "mult" and r in SITE_OF_ROLE else rule.expr
        e = _exponents(ir, r, kind, expr)
        if e is None:
            raise UndecidedRole(
                f"cannot decide {kind} of new role '{name}': {what} role '{r}' has {kind} = {rule.expr}, not a power "
                "law in the ratios",
                f"write `role {name}: {kind} = ...` after the declaration",
            )
        for axis in axes:
            if axis in found and not _same(found[axis][1][axis], e[axis]):
                first = found[axis][0]
                raise UndecidedRole(
                    f"cannot decide {kind} of new role '{name}': the {what} roles disagree on its {RATIO[axis]} "
                    f"exponent ('{first}' has {found[axis][1][axis]}, '{r}' has {e[axis]})",
                    f"write `role {name}: {kind} = ...` after the declaration, or give the {what} roles one rule",
                )
            found.setdefault(axis, (r, e))
    return {axis: v[1][axis] for axis, v in found.items()}


def default_rules(
    ir: ParameterisationIR, name: str, info: RoleInfo, origin: Origin
) -> tuple[dict[str, Rule], dict[str, str], tuple[tuple[str, str], ...]]:
    """The rules, settings and derivation notes ((target, how), for `show`) a declared role gets by default, each
    rule's origins ending with `origin` (the declaration)."""
    width, placed = prototypes(ir, info)
    if not width:
        raise UndecidedRole(
            f"cannot decide the rules of new role '{name}': no bundled role of kind {info.kind} has rules yet",
            "declare it after the rules it should follow (in a root file: after `role *: ...`), or give it rules",
        )
    optimizers = {ir.optimizer(r) for r in width}
    if len(optimizers) > 1:
        raise UndecidedRole(
            f"cannot decide the optimizer of new role '{name}': the {info.kind} roles use "
            f"{', '.join(sorted(optimizers))}",
            f"write `role {name}: optimizer = ...` after the declaration",
        )
    first = width[0]
    same_place = ir.role_table[first].in_blocks == info.in_blocks
    rules: dict[str, Rule] = {}
    derivation: list[tuple[str, str]] = []
    for kind, rule in ir.roles[first].items():
        _agreed(ir, width, kind, ("n", "B", "D") if not same_place else ("n", "L", "B", "D"), name, info.kind)
        expr = rule.expr
        notes = [f"{kind} of {compress_roles(width)}"]
        origins = rule.origins
        if kind == "mult" and first in SITE_OF_ROLE:  # the site acting on the prototype becomes the role's own
            site = ir.sites[SITE_OF_ROLE[first]]
            expr, origins = expr * site.expr, origins + site.origins
            notes.append(f"x site {SITE_OF_ROLE[first]}")
        if LAYER in expr.free_symbols and not info.in_blocks:
            raise UndecidedRole(
                f"cannot decide {kind} of new role '{name}': role '{first}' reads the block index l, which a role "
                "outside the blocks does not have",
                f"write `role {name}: {kind} = ...` after the declaration",
            )
        if not same_place:
            own = _exponents(ir, first, kind, expr)
            where = "in-block" if info.in_blocks else "outside-block"
            depth = _agreed(ir, placed, kind, ("L",), name, where).get("L", sympy.Integer(0))
            shift = sympy.simplify(depth - own["L"]) if own is not None else sympy.Integer(0)
            if shift != 0:
                factor = RATIO["L"] ** shift
                expr = 1 - sympy.powsimp((1 - expr) * factor) if kind in ONE_MINUS else sympy.powsimp(expr * factor)
                notes.append(f"x m_L^({shift}) (depth rule of the {where} roles {compress_roles(placed)})")
        rules[kind] = Rule(expr, origins + (origin,))
        derivation.append((kind, " ".join(notes)))
    settings = dict(ir.settings.get(first, {}))
    return rules, settings, tuple(derivation)
