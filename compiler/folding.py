"""The symbolic proof behind `scalec check` and `scalec compile --fold`: fold forward multipliers into init and LR
with each role's optimizer's abc-symmetry, and verify with sympy that training is unchanged.

A tensor used as W_eff = c * W trains identically to W' = c * W used as is when its init mean and std are
multiplied by c and its lr, eps and weight decay shift as its optimizer's symmetry says (compiler/optimizers.py:
AdamW and Muon lr x c, eps / c, coupled wd / c; SGD lr x c^2, coupled wd / c^2; independent decay unchanged).
Which role absorbs which site is `vocabulary.FOLD_INTO` (attn.scale is folded down to d_head^-1/2, the scale
every model applies). At plan time `runtime/plan/folding_policy.py` applies the same law numerically, to biases
and per-role multipliers too; this module is not imported at run time.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import sympy

from scalec.compiler.ir import Origin, ParameterisationIR, Rule
from scalec.compiler.optimizers import decay_shift, optimizer_of
from scalec.compiler.symbols import builtin_names
from scalec.compiler.vocabulary import ATTN_SCALE_EXPONENT, FOLD_INTO
from scalec.errors import ScalecError

DEFAULT_ATTN_SCALE = builtin_names()["d_head"] ** sympy.Rational(ATTN_SCALE_EXPONENT)
# site -> (role that absorbs it, identity value of the site afterwards)
FOLD_TARGETS = {
    site: (role, DEFAULT_ATTN_SCALE if site == "attn.scale" else sympy.Integer(1)) for site, role in FOLD_INTO.items()
}


class FoldError(ScalecError):
    """A forward site that cannot be folded exactly."""


@dataclass
class FoldReport:
    folded: list[str] = field(default_factory=list)  # "output.mult -> unembed (x 1/m_N)"
    kept: list[str] = field(default_factory=list)


def symmetry_powers(ir: ParameterisationIR, role: str) -> dict[str, sympy.Rational]:
    """Per target, the power of c it is multiplied by when `role`'s tensor absorbs multiplier c."""
    opt = optimizer_of(ir.optimizer(role))
    if opt.symmetry is None:
        raise FoldError(f"error: role {role} trains with {opt.name}, which has no abc-symmetry to fold with")
    powers = {"init_mean": sympy.Integer(1)}
    for kind, shift in opt.symmetry.items():
        if kind != "mult":
            powers[kind] = sympy.Rational(shift)
    powers["weight_decay"] = sympy.Rational(decay_shift(opt, ir.decay(role)))
    return powers


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
    origin = Origin("<fold>", 0, "folded by scalec (the optimizer's abc-symmetry)")
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
        for kind, power in symmetry_powers(ir, role).items():
            if kind in rules:
                prev = rules[kind]
                rules[kind] = Rule(prev.expr * factor**power, prev.origins + (origin,))
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
        for kind, power in symmetry_powers(before, role).items():
            if kind not in before.roles[role]:
                continue
            lhs = before.roles[role][kind].expr * m0**power
            rhs = after.roles[role][kind].expr * m1**power
            if sympy.simplify(lhs - rhs) != 0:
                raise FoldError(
                    f"error: folding changed the training dynamics of {role} {kind} "
                    f"({lhs} vs {rhs}); please report this"
                )
