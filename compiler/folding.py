"""Fold forward multipliers into init and LR with the Adam abc-symmetry, for models that cannot take them.

A tensor used as W_eff = c * W under AdamW trains identically to W' = c * W used as is, when its init std and
LR are multiplied by c and its eps and coupled weight decay divided by c.  So:
  output.mult -> unembed,  embed.mult -> embed,  residual.attn -> attn.o,  residual.mlp -> mlp.down
  (the last linear of each branch; exact when that linear has no bias),
  attn.scale / (1/sqrt(d_head)) -> attn.q (exact without QK-norm: normalised queries would undo it).
Every folded role is verified with sympy: mult*init, mult*lr, eps/mult and wd/mult are unchanged.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import sympy

from scalec.compiler.ir import Origin, ParameterisationIR, Rule
from scalec.compiler.symbols import builtin_names
from scalec.errors import ScalecError

DEFAULT_ATTN_SCALE = 1 / sympy.sqrt(builtin_names()["d_head"])
# site -> (role that absorbs it, identity value of the site afterwards)
FOLD_TARGETS = {
    "output.mult": ("unembed", sympy.Integer(1)),
    "embed.mult": ("embed", sympy.Integer(1)),
    "residual.attn": ("attn.o", sympy.Integer(1)),
    "residual.mlp": ("mlp.down", sympy.Integer(1)),
    "attn.scale": ("attn.q", DEFAULT_ATTN_SCALE),
}
_SCALED = {"init_mean": 1, "init_std": 1, "lr": 1, "eps": -1, "weight_decay": -1}


class FoldError(ScalecError):
    """A forward site that cannot be folded exactly."""


@dataclass
class FoldReport:
    folded: list[str] = field(default_factory=list)  # "output.mult -> unembed (x m_N^-1)"
    kept: list[str] = field(default_factory=list)


def fold(
    ir: ParameterisationIR,
    qk_norm: bool = False,
    linear_bias: bool = False,
    sites: tuple[str, ...] = tuple(FOLD_TARGETS),
) -> tuple[ParameterisationIR, FoldReport]:
    """A new IR with the given sites folded into their roles (sites left at identity), verified exactly."""
    out = dataclasses.replace(
        ir, roles={r: dict(k) for r, k in ir.roles.items()}, sites=dict(ir.sites), name=f"{ir.name}_folded"
    )
    report = FoldReport()
    origin = Origin("<fold>", 0, "folded by scalec (Adam abc-symmetry)")
    for site in sites:
        role, identity = FOLD_TARGETS[site]
        factor = sympy.simplify(ir.sites[site].expr / identity)
        if factor == 1:
            continue
        if site == "attn.scale" and qk_norm:
            raise FoldError(
                f"error: cannot fold site 'attn.scale' ({ir.sites[site].expr}) into attn.q: QK-norm "
                "normalises the queries after the projection; give the model an attention-scale hook"
            )
        if site.startswith("residual.") and linear_bias:
            raise FoldError(
                f"error: cannot fold site '{site}' into {role}: the branch's last linear has a bias "
                "that the bias role does not single out; give the model a residual-multiplier hook"
            )
        rules = out.roles[role]
        for kind, sign in _SCALED.items():
            prev = rules[kind]
            rules[kind] = Rule(prev.expr * factor**sign, prev.origins + (origin,))
        out.sites[site] = Rule(identity, ir.sites[site].origins + (origin,))
        report.folded.append(f"{site} -> {role} (x {factor})")
    _verify(ir, out)
    return out, report


def _effective(ir: ParameterisationIR, role: str) -> sympy.Expr:
    mult = ir.roles[role]["mult"].expr
    for site, (target, identity) in FOLD_TARGETS.items():
        if target == role:
            mult = mult * ir.sites[site].expr / identity
    return mult


def _verify(before: ParameterisationIR, after: ParameterisationIR) -> None:
    """The symmetry invariants of every role must be unchanged (checked symbolically)."""
    for role in before.roles:
        m0, m1 = _effective(before, role), _effective(after, role)
        for kind, sign in _SCALED.items():
            lhs = before.roles[role][kind].expr * m0**sign
            rhs = after.roles[role][kind].expr * m1**sign
            if sympy.simplify(lhs - rhs) != 0:
                raise FoldError(
                    f"error: folding changed the training dynamics of {role} {kind} "
                    f"({lhs} vs {rhs}); please report this"
                )
