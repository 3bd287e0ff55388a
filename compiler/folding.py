"""Fold forward multipliers into init and LR with the Adam abc-symmetry, for models that cannot take them.

A tensor used as W_eff = c * W under AdamW trains identically to W' = c * W used as is, when its init mean and
std and its LR are multiplied by c and its eps and coupled weight decay divided by c.  So:
  output.mult -> unembed,  embed.mult -> embed,  residual.attn -> attn.o,  residual.mlp -> mlp.down
  (the last linear of each branch, and that linear's bias: c * (W x + b) = (c W) x + (c b)),
  attn.scale / (1/sqrt(d_head)) -> attn.q and its bias (exact without QK-norm: normalised queries would undo
  it; exact only when the queries have a tensor of their own, not a fused qkv).
`fold` rewrites the IR and verifies every folded role with sympy (mult*init, mult*lr, eps/mult and wd/mult
unchanged); `make_plan` decides which sites a model needs folded and applies `SYMMETRY` to the biases of the
folded linears and to per-role multipliers (`mult[<role>]`, a runtime HP) with the same law.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from typing import Any

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
# The abc-symmetry: folding a multiplier c into a tensor multiplies each of these by c**power.
SYMMETRY = {"init_mean": 1, "init_std": 1, "lr": 1, "eps": -1, "weight_decay": -1}


class FoldError(ScalecError):
    """A forward site that cannot be folded exactly."""


@dataclass
class FoldReport:
    folded: list[str] = field(default_factory=list)  # "output.mult -> unembed (x 1/m_N)"
    kept: list[str] = field(default_factory=list)


def apply_symmetry(values: dict[str, float], factor: float) -> dict[str, float]:
    """`values` (init_mean, init_std, lr, eps, weight_decay, ...) of a tensor that absorbs multiplier `factor`."""
    return {k: v * factor ** SYMMETRY[k] if k in SYMMETRY else v for k, v in values.items()}


def fold(
    ir: ParameterisationIR,
    qk_norm: bool = False,
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
        rules = out.roles[role]
        for kind, sign in SYMMETRY.items():
            prev = rules[kind]
            rules[kind] = Rule(prev.expr * factor**sign, prev.origins + (origin,))
        out.sites[site] = Rule(identity, ir.sites[site].origins + (origin,))
        report.folded.append(f"{site} -> {role} (x {factor})")
    _verify(ir, out)
    return out, report


@functools.lru_cache(maxsize=64)
def folded_module(rules: Any, sites: tuple[str, ...]) -> tuple[Any, tuple[str, ...]]:
    """The generated module of `rules` (a Parameterisation) with `sites` folded, and the fold report lines."""
    from scalec.compiler.codegen import generate
    from scalec.compiler.parameterisation import import_source

    ir, report = fold(rules.ir, sites=sites)
    return import_source(generate(ir), ir.name), tuple(report.folded)


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
        for kind, sign in SYMMETRY.items():
            lhs = before.roles[role][kind].expr * m0**sign
            rhs = after.roles[role][kind].expr * m1**sign
            if sympy.simplify(lhs - rhs) != 0:
                raise FoldError(
                    f"error: folding changed the training dynamics of {role} {kind} "
                    f"({lhs} vs {rhs}); please report this"
                )
