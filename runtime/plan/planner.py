"""make_plan: per parameter of a model, the init, optimizer settings and forward multiplier a parameterisation
prescribes at one shape (`plan_data.Plan`).

Four phases: the inputs and the binding (`_setting`, with what the model itself reveals: `model_facts.py`);
the multipliers the model does not apply, to fold or refuse (`_folds`); the factor each tensor absorbs
(`_factors`); the entries and the multipliers left to the model (`_entries`, `_multipliers`).  Everything is
numeric: the generated module gives the values, the folding policy (`folding_policy.py`) the one abc-symmetry
law; nothing here imports sympy.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from scalec.compiler.domain import first_violation
from scalec.compiler.vocabulary import BRANCH_SITES, FOLD_INTO, NORM_ROLES, SITE_ROLES, role_mult_key, site_identity
from scalec.runtime.plan.binding import bind
from scalec.runtime.plan.folding_policy import (
    Pending,
    absorb,
    applied,
    fold_target,
    obstacle,
    refusal,
    tied_readout_mult,
)
from scalec.runtime.plan.inputs import check_region, module_of, resolve_hparams, role_values
from scalec.runtime.plan.model_facts import LazyTrace, given_shape, readout_tie, traced_head_dim
from scalec.runtime.plan.model_params import BoundParam
from scalec.runtime.plan.model_shape import mismatch
from scalec.runtime.plan.plan_data import Plan, PlanEntry, PlanError

__all__ = ["Plan", "PlanEntry", "PlanError", "make_plan"]


@dataclass
class _Setting:
    """Phase 1's result: the rule module at a checked shape and HPs, the bound parameters and their rule values."""

    module: Any
    shape: Any
    hp: Any
    bound: list[BoundParam]
    fold: bool
    keys: dict[str, tuple]  # parameter name -> (role, fan_in, fan_out, block or None): what its values depend on
    values: dict[tuple, Any]  # key -> the module's RoleHParams (unfolded)
    sites: dict[str, float]  # the rule's forward sites at this shape (output.mult: the tied readout's, if tied)
    role_mults: dict[str, float]  # the one forward multiplier of each role
    tied: list[BoundParam] = field(default_factory=list)  # embedding tensors that are also the readout
    tie: str | None = None  # how the readout is tied (one line), for refusals
    readout_unknown: str | None = None  # why the readout could not be located (the forward pass failed)


@dataclass
class _Folds:
    """Phase 2's result: the sites and per-role multipliers folded into tensors, each with its factor c."""

    sites: dict[str, float] = field(default_factory=dict)
    roles: dict[str, float] = field(default_factory=dict)


def _block_index(name: str) -> int:
    """The 0-based block index of a parameter: the first all-digit segment of its name (blocks.3.attn.q.weight)."""
    for segment in name.split("."):
        if segment.isdigit():
            return int(segment)
    raise PlanError(f"error: parameter '{name}' has no block index in its name, but its role's rules use l")


def _role_mult(s: _Setting, role: str) -> float:
    """The one forward multiplier of `role` (the model applies one per role): equal across its bound tensors."""
    mults = {float(v.mult) for k, v in s.values.items() if k[0] == role}
    if len(mults) > 1:
        raise PlanError(
            f"error: role '{role}' gets forward multipliers {sorted(mults)} across its tensors; the model applies "
            "one per role, so a mult rule may not depend on fan_in, fan_out or l"
        )
    if not mults:
        layer = 0 if role in getattr(s.module, "LAYERED_ROLES", ()) else None
        mults = {float(role_values(s.module, (role, 0, 0, layer), s.shape, s.hp).mult)}
    return mults.pop()


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _setting(rules: Any, model: Any, shape: Any, hp: Any, fold: bool | None, binding: Mapping[str, Any]) -> _Setting:
    """Phase 1, inputs and binding: the checked shape and HPs, every parameter bound to a role, its rule values."""
    module = module_of(rules)
    shape, open_head_dim = given_shape(module, model, shape)
    hp = resolve_hparams(module, hp)
    check_region(module, shape, hp)
    bound = bind(model, roles=module.ROLES, **binding)
    trace = LazyTrace(model, binding.get("example_input"))
    if open_head_dim:
        shape = traced_head_dim(module, model, shape, hp, bound, trace)
        check_region(module, shape, hp)
    wrong = mismatch(model, bound, shape)
    if wrong:
        raise PlanError(f"error: {wrong}")
    # Rules may use each tensor's fans and block index (fan_in, fan_out, l): values per (role, fans, block).
    layered = getattr(module, "LAYERED_ROLES", frozenset())
    keys = {b.name: (b.role, b.fan_in, b.fan_out, _block_index(b.name) if b.role in layered else None) for b in bound}
    values = {k: role_values(module, k, shape, hp) for k in sorted(set(keys.values()), key=str)}
    sites = {k: float(v) for k, v in module.sites(shape).as_dict().items()}
    fold = bool(getattr(rules, "fold", False)) if fold is None else bool(fold)
    s = _Setting(module, shape, hp, bound, fold, keys, values, sites, {})
    s.role_mults = {r: _role_mult(s, r) for r in module.ROLES}
    s.tied, s.tie, s.readout_unknown = readout_tie(bound, trace)
    if s.tied or s.readout_unknown:  # the readout's whole multiplier is the output site (the tensor trains as
        s.sites["output.mult"] = tied_readout_mult(module, shape, hp)  # the embedding, if it is the readout)
        s.role_mults["unembed"] = 1.0
    return s


def _folds(s: _Setting, model: Any, applied_sites: Any) -> _Folds:
    """Phase 2, the multipliers the model does not apply: each non-identity one whose tensors the model has is
    folded (when `fold` and exact) or the plan is refused, in one line naming them all."""
    known = set(s.sites) | {role_mult_key(r) for r in s.module.ROLES}
    taken = applied(applied_sites, model, known)
    roles = {b.role for b in s.bound}
    guessing = any(b.source == "inferred" and b.width_class == "hidden" for b in s.bound)
    candidates = [(k, v, SITE_ROLES[k]) for k, v in s.sites.items()]
    candidates += [(role_mult_key(r), m, (r,)) for r, m in s.role_mults.items()]
    optimizers = {k[0]: getattr(v, "optimizer", "adamw") for k, v in s.values.items()}
    pending: list[Pending] = []
    for key, value, site_roles in candidates:
        relevant = bool(roles & set(site_roles)) or (key == "output.mult" and bool(s.tied or s.readout_unknown))
        relevant = relevant or (guessing and key in BRANCH_SITES)
        if not relevant or key in taken or math.isclose(value, site_identity(key, s.shape.d_head), rel_tol=1e-12):
            continue
        why = obstacle(key, s.bound, s.tie, optimizers)
        if key == "output.mult" and s.readout_unknown:
            why = f"no parameter binds to unembed and the readout could not be located: {s.readout_unknown}"
        pending.append((key, value, why))
    if pending and (not s.fold or any(why for _, _, why in pending)):
        raise refusal(str(s.module.NAME), model, pending, s.fold)
    folds = _Folds()
    for key, value, _ in pending:
        if key in FOLD_INTO:
            folds.sites[key] = value / site_identity(key, s.shape.d_head)
        else:
            folds.roles[fold_target(key)] = value
    return folds


def _factors(s: _Setting, folds: _Folds) -> tuple[dict[str, float], dict[str, float], list[str]]:
    """Phase 3, per-tensor factors: per role the product of what folds into it (its sites, its own mult), per
    tensor that times the factor of a folded linear's bias; and one report line per fold."""
    by_role: dict[str, float] = {}
    lines: list[str] = []
    for site in sorted(folds.sites):
        role, c = FOLD_INTO[site], folds.sites[site]
        by_role[role] = by_role.get(role, 1.0) * c
        lines.append(f"{site} -> {role} (x {c:.6g})")
    by_name = {b.name: b for b in s.bound}
    extra: dict[str, float] = {}
    for site in sorted(folds.sites):
        c = folds.sites[site]
        for b in s.bound:
            if b.role == FOLD_INTO[site] and b.name.endswith(".weight"):
                bias = by_name.get(b.name.removesuffix("weight") + "bias")
                if bias is not None:
                    extra[bias.name] = extra.get(bias.name, 1.0) * c
                    lines.append(f"{site} -> bias '{bias.name}' (x {c:.6g})")
    for role, c in folds.roles.items():
        by_role[role] = by_role.get(role, 1.0) * c
        lines.append(f"{role_mult_key(role)} -> {role} (x {c:.6g})")
    return by_role, extra, lines


def _folded_values(s: _Setting, r: Any, c: float) -> Any:
    """A role's RoleHParams once its tensors absorb factor c (the optimizer's abc-symmetry)."""
    if c == 1.0:
        return r
    fields = {f.name: getattr(r, f.name) for f in dataclasses.fields(r)}
    return dataclasses.replace(r, **absorb(fields, c, getattr(r, "optimizer", "adamw"), getattr(r, "decay", "coupled")))


def _entries(s: _Setting, by_role: Mapping[str, float], extra: Mapping[str, float], folds: _Folds) -> list[PlanEntry]:
    """Phase 4, the entries: each tensor's folded values, checked against the domains, in torch's convention."""
    per_key = {k: _folded_values(s, r, by_role.get(k[0], 1.0)) for k, r in s.values.items()}
    for (role, *_), r in per_key.items():
        bad = first_violation(r)  # the checker's domains (compiler/domain.py)
        if bad is not None:
            kind, value, why = bad
            raise PlanError(
                f"error: role '{role}' gets {kind} = {value} at this shape, {why}; check the hp values and the shape"
            )
    entries = []
    for b in s.bound:
        r = per_key[s.keys[b.name]]
        optimizer, decay = getattr(r, "optimizer", "adamw"), getattr(r, "decay", "coupled")
        if optimizer == "muon" and len(b.shape) != 2:
            raise PlanError(
                f"error: parameter '{b.name}' (role {b.role}, shape {list(b.shape)}) uses muon, which takes 2-D "
                "matrices only; bind it to a role that uses adamw or sgd"
            )
        values = {k: float(getattr(r, k)) for k in ("init_mean", "init_std", "lr", "weight_decay", "mult")}
        values["eps"] = _opt_float(r.eps)
        if b.role in NORM_ROLES and b.name.endswith(".bias"):
            values["init_mean"] = 0.0  # a norm's shift starts at 0; the rule's init_mean is its gain's
        if b.role in folds.roles:
            values["mult"] = 1.0
        if b.name in extra:
            values = absorb(values, extra[b.name], optimizer, decay)
        values["weight_decay_rule"] = values["weight_decay"]  # in the rule's convention `decay`
        if decay == "independent":  # torch's decoupled form shrinks lr_t * wd per step: independent decay is wd / lr
            values["weight_decay"] /= values["lr"]
        entries.append(
            PlanEntry(
                name=b.name,
                shape=b.shape,
                role=b.role,
                betas=(float(r.beta1), float(r.beta2)) if optimizer == "adamw" else None,
                fan_in=b.fan_in,
                fan_out=b.fan_out,
                tied_with=b.tied_with,
                optimizer=optimizer,
                decay=decay,
                momentum=_opt_float(getattr(r, "momentum", None)),
                nesterov=getattr(r, "nesterov", None),
                ns_steps=int(r.ns_steps) if getattr(r, "ns_steps", None) is not None else None,
                adjust_lr=getattr(r, "adjust_lr", None),
                **values,
            )
        )
    return entries


def _multipliers(s: _Setting, folds: _Folds) -> dict[str, float]:
    """The forward multipliers left to the model: folded sites at their identity, folded role mults dropped."""
    out = {k: (site_identity(k, s.shape.d_head) if k in folds.sites else v) for k, v in s.sites.items()}
    for role in s.module.ROLES:
        if role in folds.roles or (s.tied and role == "unembed"):
            continue
        if s.role_mults[role] != 1.0:
            out[role_mult_key(role)] = s.role_mults[role]
    return out


def make_plan(
    rules: Any,
    model: Any,
    shape: Any,
    hp: Any = None,
    preset: str | None = "auto",
    patterns: Mapping[str, str] | None = None,
    base_model: Any = None,
    applied_sites: Any = None,
    fold: bool | None = None,
    example_input: Any = None,
) -> Plan:
    """Plan every parameter of `model` under `rules` (scalec.load(...) or a generated module) at `shape`.

    applied_sites: the forward multipliers the model (or the caller's hooks) applies: None = what the model's
    class declares in `APPLIED_SITES` (the bundled GPT: every site; any other model: none), "all", or site names
    ("output.mult", "residual.attn", "mult[mlp.gate]", ...). Every other non-unit multiplier is folded into init
    and lr when `fold` (default: `scalec.load(..., fold=True)`) and its optimizer's abc-symmetry makes that
    exact, else refused.
    """
    binding = {"preset": preset, "patterns": patterns, "base_model": base_model, "example_input": example_input}
    s = _setting(rules, model, shape, hp, fold, binding)
    folds = _folds(s, model, applied_sites)
    by_role, extra, lines = _factors(s, folds)
    entries = _entries(s, by_role, extra, folds)
    name = str(s.module.NAME) + ("_folded" if folds.sites else "")
    return Plan(
        rule=name,
        axes=dataclasses.asdict(s.shape),
        entries=entries,
        multipliers=_multipliers(s, folds),
        preset=",".join(sorted({b.source for b in s.bound})),
        folded=lines,
    )
