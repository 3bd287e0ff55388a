"""Apply a plan's forward multipliers to a model that has no multiplier arguments, with forward hooks placed
where a hook is exact; refuse every other non-unit multiplier.

| site | applied to the output of |
|---|---|
| `output.mult` (x `mult[unembed]`) | the model (its logits) |
| `embed.mult` (x `mult[embed]`) | each module owning an `embed` parameter |
| `residual.attn` / `residual.mlp` | each module owning an `attn.o` / `mlp.down` parameter (the branch's end) |

A residual-branch hook is exact only if that module's output is what the block adds to the residual stream.
`install` proves this on an example batch before training: the stream entering the final norm must equal the
embedding outputs plus every branch output. `attn.scale` sits inside the attention kernel, out of a hook's
reach: it must equal the model's own 1/sqrt(d_head) (fold it into the queries otherwise), as must every other
`mult[<role>]` be 1.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from scalec.compiler.vocabulary import BRANCH_END_ROLES, HOOK_ROLE_MULTS, HOOK_SITES, site_identity
from scalec.runtime.plan.model_params import normalise_name
from scalec.runtime.plan.plan_data import Plan, PlanError

__all__ = [
    "HOOK_ROLE_MULTS",
    "HOOK_SITES",
    "ModelSites",
    "MultiplierHookError",
    "MultiplierHooks",
    "SiteRecorder",
    "install",
    "locate",
    "named_modules",
    "unapplied",
    "verify_branches",
]
BRANCH_ROLES = BRANCH_END_ROLES  # the vocabulary's: which role's module ends each residual branch kind
_RTOL = 1e-4  # float32 sums over a few dozen branches agree to ~1e-6


class MultiplierHookError(PlanError):
    """A forward multiplier that hooks cannot apply exactly to this model, or roles that do not locate it."""


@dataclass(frozen=True)
class ModelSites:
    """Normalised names of the modules a plan's roles point at, in model order."""

    embed: tuple[str, ...]
    attn: tuple[str, ...]  # modules that end the attention branches (own an attn.o parameter)
    mlp: tuple[str, ...]  # modules that end the MLP branches (own an mlp.down parameter)
    final_norm: str | None

    def branches(self, kind: str) -> tuple[str, ...]:
        """The branch-ending modules of one kind ("attn" or "mlp")."""
        return self.attn if kind == "attn" else self.mlp


def _owner(param_name: str) -> str:
    return param_name.rpartition(".")[0]


def named_modules(model: Any) -> dict[str, Any]:
    """Modules by normalised name ("" is the model itself)."""
    return {normalise_name(n): m for n, m in model.named_modules(remove_duplicate=False)}


def locate(model: Any, plan: Plan) -> ModelSites:
    """The modules owning the plan's embed, attn.o, mlp.down and final_norm parameters."""
    from torch import nn

    modules = named_modules(model)
    embed: list[str] = []
    for e in plan.entries:
        if e.role != "embed":
            continue
        # A tied tensor has several owners: the lookup table (nn.Embedding) is the embedding, not the readout.
        owners = [_owner(n) for n in (e.name, *e.tied_with)]
        lookups = [o for o in owners if isinstance(modules.get(o), (nn.Embedding, nn.EmbeddingBag))]
        owner = (lookups or owners)[0]
        if owner == "":
            raise MultiplierHookError(
                f"error: embedding parameter '{e.name}' belongs to the model itself, so no hook sees the "
                "embedding's output; hold it in a submodule (nn.Embedding)"
            )
        if owner not in embed:
            embed.append(owner)

    def owners(role: str) -> tuple[str, ...]:
        out: list[str] = []
        for e in plan.entries:
            if e.role == role and _owner(e.name) not in out:
                out.append(_owner(e.name))
        return tuple(out)

    norms = owners("final_norm")
    if len(norms) > 1:
        raise MultiplierHookError(
            f"error: parameters of {len(norms)} modules bind to final_norm ({', '.join(norms)}); bind only "
            "the last norm before the readout to final_norm"
        )
    return ModelSites(tuple(embed), owners("attn.o"), owners("mlp.down"), norms[0] if norms else None)


def _identity(plan: Plan, key: str) -> float:
    """The value at which a multiplier changes nothing in a model that lacks it (attn.scale: 1/sqrt(d_head))."""
    return site_identity(key, plan.axes["d_head"])


def unapplied(plan: Plan) -> list[str]:
    """'key = value' for each multiplier of the plan that differs from identity and that hooks cannot apply."""
    out = []
    for key, value in plan.multipliers.items():
        if key in HOOK_SITES or key in HOOK_ROLE_MULTS:
            continue
        if not math.isclose(value, _identity(plan, key), rel_tol=1e-12):
            out.append(f"{key} = {value:.6g}")
    return out


def _scale_output(factor: float) -> Callable:
    def hook(_module, _inputs, output):
        if hasattr(output, "logits"):
            output.logits = output.logits * factor
            return output
        return output * factor

    return hook


def _scale(factor: float) -> Callable:
    def hook(_module, _inputs, output):
        return output * factor

    return hook


@dataclass
class MultiplierHooks:
    """The hooks `install` registered and the sites they act on; `remove()` takes them off."""

    sites: ModelSites
    factors: dict[str, float]
    handles: list[Any]

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []


def install(model: Any, plan: Plan, example: Any = None) -> MultiplierHooks:
    """Register hooks that apply the plan's hookable multipliers; refuse the rest (one error naming them).

    `example`: a batch of input ids; required when residual multipliers are applied, to prove the hooked modules
    end the residual branches (see the module docstring)."""
    bad = unapplied(plan)
    if bad:
        raise MultiplierHookError(
            f"error: forward multiplier {bad[0]} cannot be applied by a hook (hooks see module outputs; the "
            "model is taken to use 1/sqrt(d_head) attention and no per-tensor multipliers); fold it into init "
            "and lr (scalec.load(rule, fold=True)) or build that multiplier into the model"
        )
    m = plan.multipliers
    factors = {
        "logits": m.get("output.mult", 1.0) * m.get("mult[unembed]", 1.0),
        "embed": m.get("embed.mult", 1.0) * m.get("mult[embed]", 1.0),
        "attn": m.get("residual.attn", 1.0),
        "mlp": m.get("residual.mlp", 1.0),
    }
    sites = locate(model, plan)
    modules = named_modules(model)
    for what, role in (("embed", "embed"), *BRANCH_ROLES.items()):
        names = sites.embed if what == "embed" else sites.branches(what)
        if factors[what] != 1.0 and not names:
            site = "embed.mult" if what == "embed" else f"residual.{what}"
            raise MultiplierHookError(
                f"error: {site} = {factors[what]:.6g} needs the modules owning '{role}' parameters, and no "
                f"parameter binds to {role}; bind them (patterns={{'<glob>': '{role}'}})"
            )
    handles = []
    if factors["logits"] != 1.0:
        handles.append(model.register_forward_hook(_scale_output(factors["logits"])))
    for what in ("embed", "attn", "mlp"):
        if factors[what] != 1.0:
            names = sites.embed if what == "embed" else sites.branches(what)
            handles += [modules[n].register_forward_hook(_scale(factors[what])) for n in names]
    hooks = MultiplierHooks(sites, factors, handles)
    if factors["attn"] != 1.0 or factors["mlp"] != 1.0:
        try:
            verify_branches(model, sites, example)
        except Exception:
            hooks.remove()
            raise
    return hooks


class SiteRecorder:
    """Forward hooks that capture, while active, the embedding outputs (summed), each branch output, the
    residual stream entering the final norm, and the final norm's output."""

    def __init__(self, model: Any, sites: ModelSites) -> None:
        if sites.final_norm is None:
            raise MultiplierHookError(
                "error: no parameter binds to final_norm, so the residual stream cannot be located; bind the "
                "norm before the readout (patterns={'<glob>': 'final_norm'})"
            )
        modules = named_modules(model)
        self.active = False
        self.out: dict[str, Any] = {}
        self.handles = [modules[n].register_forward_hook(self._add("embed")) for n in sites.embed]
        for kind in BRANCH_ROLES:
            for i, n in enumerate(sites.branches(kind)):
                self.handles.append(modules[n].register_forward_hook(self._add(f"{kind}.{i}")))
        norm = modules[sites.final_norm]
        self.handles.append(norm.register_forward_pre_hook(self._stream, with_kwargs=True))
        self.handles.append(norm.register_forward_hook(self._add("final_norm")))

    def _add(self, key: str) -> Callable:
        def hook(_module, _inputs, output):
            if self.active:
                value = output.detach().float()
                self.out[key] = self.out[key] + value if key in self.out else value.clone()

        return hook

    def _stream(self, _module, args, kwargs):
        if self.active:
            x = args[0] if args else next(iter(kwargs.values()))
            self.out["residual"] = x.detach().float().clone()

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []


def verify_branches(model: Any, sites: ModelSites, example: Any) -> None:
    """Raise unless the residual stream entering the final norm equals the embedding outputs plus every branch
    output on `example` (eval mode, no grad): then scaling those outputs scales exactly the residual branches."""
    import torch

    if example is None:
        raise MultiplierHookError(
            "error: residual multipliers need an example batch of input ids (install(..., example=ids)) to "
            "verify that the hooked modules end the residual branches"
        )
    if not sites.attn and not sites.mlp:
        raise MultiplierHookError(
            "error: no parameter binds to attn.o or mlp.down, so the residual branches cannot be located; bind "
            "each branch's last matrix (patterns={'<glob>': 'attn.o', '<glob>': 'mlp.down'})"
        )
    rec = SiteRecorder(model, sites)
    was_training = model.training
    model.eval()
    rec.active = True
    try:
        with torch.no_grad():
            model(example)
    finally:
        rec.active = False
        rec.remove()
        model.train(was_training)
    out = rec.out
    stream = out.get("residual")
    if stream is None or "embed" not in out:
        raise MultiplierHookError(
            f"error: the forward pass did not run the {'final norm' if stream is None else 'embedding'} "
            "module; check the roles bound to embed and final_norm"
        )
    total = out["embed"] + sum(v for k, v in out.items() if k.startswith(("attn.", "mlp.")))
    err = float((stream - total).pow(2).mean().sqrt()) / max(float(stream.pow(2).mean().sqrt()), 1e-30)
    if not err < _RTOL:
        raise MultiplierHookError(
            f"error: the residual stream entering '{sites.final_norm}' is not the embedding plus the outputs of "
            f"the modules bound to attn.o/mlp.down (relative mismatch {err:.2g}), so a residual multiplier hook "
            "there would not be exact; bind each branch's last matrix to attn.o/mlp.down, or fold the "
            "residual multipliers (scalec.load(rule, fold=True))"
        )
