"""What make_plan does with a forward multiplier the model does not apply: fold it into a tensor where its
optimizer's abc-symmetry makes that exact, or refuse in one line.

The law (design.md, third round; compiler/optimizers.py holds each optimizer's exponents): a tensor theta used as
c * theta trains identically to theta' = c * theta used as is when init mean and std go x c and lr, eps and weight
decay shift by the optimizer's symmetry (AdamW and Muon: lr x c, eps / c, coupled wd / c; SGD: lr x c^2, coupled
wd / c^2; independent decay is a shrink per step, unchanged).  One numeric mechanism for every fold: sites into
the role that ends them (vocabulary.FOLD_INTO), with that linear's bias; per-role multipliers into their role.
`compiler/folding.py` proves the same law symbolically for `scalec check` and `compile --fold`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from scalec.compiler.optimizers import OPTIMIZERS, decay_shift
from scalec.compiler.vocabulary import BRANCH_SITES, FOLD_INTO, TIED_BLOCKED
from scalec.runtime.plan.model_params import BoundParam, unwrap
from scalec.runtime.plan.plan_error import PlanError

# A site or per-role multiplier the model lacks: (key, value, why it cannot be folded or None).
Pending = tuple[str, float, "str | None"]


def absorb(values: Mapping[str, Any], c: float, optimizer: str, decay: str) -> dict[str, Any]:
    """A tensor's values (init_mean, init_std, lr, eps, weight_decay in the rule's convention, ...) once it absorbs
    forward multiplier `c` under `optimizer`'s abc-symmetry; other keys pass through."""
    opt = OPTIMIZERS[optimizer]
    if opt.symmetry is None:  # pragma: no cover - obstacle() refuses such roles before any fold
        raise PlanError(f"error: {optimizer} has no abc-symmetry to fold a multiplier with")
    powers = {"init_mean": 1.0, **{k: float(v) for k, v in opt.symmetry.items() if k != "mult"}}
    powers["weight_decay"] = float(decay_shift(opt, decay))
    out = dict(values)
    for key, power in powers.items():
        if out.get(key) is not None and power:
            out[key] = out[key] * c**power
    return out


def fold_target(key: str) -> str | None:
    """The role a site or `mult[<role>]` key folds into."""
    if key.startswith("mult[") and key.endswith("]"):
        return key[5:-1]
    return FOLD_INTO.get(key)


def applied(applied_sites: Any, model: Any, known: set[str]) -> set[str]:
    """The multipliers the model (or the caller's hooks) applies: `applied_sites` ("all" or names), or by default
    what the model's class declares in `APPLIED_SITES` (the bundled GPT: everything; other models: none)."""
    if applied_sites is None:
        return set(getattr(type(unwrap(model)), "APPLIED_SITES", ())) & known
    if isinstance(applied_sites, str):
        if applied_sites != "all":
            raise PlanError(
                f"error: applied_sites='{applied_sites}' is not 'all'; pass 'all' or a collection of site names "
                "such as {'output.mult', 'residual.attn'}"
            )
        return set(known)
    sites = set(applied_sites)
    unknown = sorted(sites - known)
    if unknown:
        raise PlanError(f"error: applied_sites names unknown site '{unknown[0]}'; sites: {', '.join(sorted(known))}")
    return sites


def tied_readout_mult(module: Any, shape: Any, hp: Any) -> float:
    """The readout multiplier of a tensor shared by embedding and readout (mup's MuSharedReadout): the tensor
    trains as the embedding, so the logits need the readout's whole multiplier times how much faster the
    readout's lr scales than the embedding's (mult * lr is what the abc-symmetry preserves): 1/m_N under muP in
    either form, and under Complete(d)P."""
    u, e = module.role_hparams("unembed", shape, hp), module.role_hparams("embed", shape, hp)
    u0, e0 = module.role_hparams("unembed", module.BASE, hp), module.role_hparams("embed", module.BASE, hp)
    out = module.sites(shape).output_mult
    return float(u.mult * out * (u.lr / u0.lr) / (e.lr / e0.lr))


def obstacle(key: str, bound: list[BoundParam], tie: str | None, optimizers: Mapping[str, str]) -> str | None:
    """Why multiplier `key` cannot be folded exactly into this model, or None (`tie`: how the readout is tied to
    the embedding, one line, or None)."""
    target = fold_target(key)
    optimizer = optimizers.get(target, "adamw")
    if OPTIMIZERS[optimizer].symmetry is None:
        return f"{target} trains with {optimizer}, which has no abc-symmetry to fold with"
    guessed = [b for b in bound if b.source == "inferred" and b.width_class == "hidden"]
    if key in BRANCH_SITES and guessed:
        why = guessed[0].ambiguity or "roles inferred from width alone"
        return (
            f"the module graph did not decide which matrices end the residual branches ({why}); name them with "
            "patterns={'<glob>': 'attn.o' / 'mlp.down' / 'attn.q'}"
        )
    if key in TIED_BLOCKED and tie:
        return f"{tie}, which trains as the embedding (as mup's MuSharedReadout)"
    roles = {b.role for b in bound}
    if key in FOLD_INTO and target not in roles:
        return f"no parameter is bound as {target}, the tensor it would fold into"
    if key == "attn.scale":
        if "qk_norm" in roles:
            return "QK-norm normalises the queries after the projection"
        fused = next((b for b in bound if b.role == "attn.q" and (b.fused or b.fan_out > b.fan_in)), None)
        if fused is not None:
            return f"'{fused.name}' holds the keys and values too (a fused qkv)"
    return None


def refusal(rule: str, model: Any, pending: list[Pending], fold: bool) -> PlanError:
    """One line: every multiplier the model would drop, why any cannot be folded, and the fixes."""
    parts = [f"{s} = {v:.6g}" + (f" (cannot be folded: {why})" if why else "") for s, v, why in pending]
    names = "{" + ", ".join(repr(s) for s, _, _ in pending) + "}"
    fix = f"apply {'it' if len(pending) == 1 else 'them'} in the model and pass applied_sites={names}"
    if not fold and all(why is None for _, _, why in pending):
        fix = f"pass fold=True (scalec.load(..., fold=True)) to fold them into init and lr, or {fix}"
    cls = type(unwrap(model)).__name__
    return PlanError(f"error: {rule} needs forward multiplier(s) {'; '.join(parts)} that {cls} does not apply; {fix}")
