"""One optimizer for a whole plan: every parameter steps with its role's optimizer (torch.optim.AdamW, SGD, Muon).

A plan's weight_decay is torch's decoupled form, a per-step shrink lr_t * wd (lr_t the scheduled lr; independent
decay arrives divided by the planned lr, so the shrink is wd x schedule factor). AdamW and Muon take it as is.
torch's SGD `weight_decay` is an L2 term added to the gradient, which momentum would filter, so an SGD group with
momentum gets weight_decay 0 in torch and `PlanOptimizer` applies the planned shrink itself before each step.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Any

from scalec.compiler.optimizers import OPTIMIZERS
from scalec.lazy_module import lazy_module
from scalec.runtime.plan.plan_error import PlanError

muon_float32 = lazy_module("scalec.runtime.plan.muon_float32")  # torch at import: loaded when a CPU Muon is built


class PlanOptimizerError(PlanError):
    """Param groups asked for in a form one torch optimizer cannot take exactly."""


def _new_group(e: Any, decoupled_sgd: bool) -> dict[str, Any]:
    g: dict[str, Any] = {"params": [], "lr": e.lr, "base_lr": e.lr}
    if e.optimizer == "adamw":
        g.update(weight_decay=e.weight_decay, betas=tuple(e.betas), eps=e.eps)
    elif e.optimizer == "sgd":
        momentum = float(e.momentum or 0.0)
        g.update(momentum=momentum, dampening=0.0, nesterov=bool(e.nesterov), weight_decay=e.weight_decay)
        if momentum and e.weight_decay:
            if not decoupled_sgd:
                raise PlanOptimizerError(
                    "error: torch SGD's weight_decay is an L2 gradient term that momentum filters, not the planned "
                    "shrink lr*wd per step; use plan.optimizer(model), which applies the shrink exactly"
                )
            g.update(weight_decay=0.0, scalec_shrink_wd=e.weight_decay)
    elif e.optimizer == "muon":
        g.update(
            weight_decay=e.weight_decay,
            momentum=e.momentum,
            nesterov=bool(e.nesterov),
            eps=e.eps,
            ns_steps=int(e.ns_steps),
            adjust_lr_fn=e.adjust_lr,
        )
    else:  # pragma: no cover - the compiler only emits known optimizers
        raise PlanOptimizerError(f"error: unknown optimizer '{e.optimizer}' in the plan; recompile the rule")
    g["roles"] = []
    return g


def param_groups(
    plan: Any, tensors: Iterable[tuple[Any, Any]], optimizer: str | None = None, decoupled_sgd: bool = False
) -> list[dict[str, Any]]:
    """Groups of `optimizer`'s parameters, one per distinct setting, with that torch optimizer's keys only."""
    used = plan.optimizers()
    if optimizer is None:
        if len(used) > 1:
            raise PlanOptimizerError(
                f"error: this plan uses {', '.join(used)}; build them all with plan.optimizer(model), or ask for "
                f"one with param_groups(model, optimizer='{used[0]}')"
            )
        optimizer = used[0]
    if optimizer not in OPTIMIZERS:
        raise PlanOptimizerError(f"error: unknown optimizer '{optimizer}'; use one of {', '.join(OPTIMIZERS)}")
    groups: dict[tuple, dict[str, Any]] = {}
    for e, p in tensors:
        if e.optimizer != optimizer:
            continue
        g = groups.get(e.optim_key())
        if g is None:
            g = groups[e.optim_key()] = _new_group(e, decoupled_sgd)
        g["params"].append(p)
        if e.role not in g["roles"]:
            g["roles"].append(e.role)
    for g in groups.values():
        g["roles"].sort()
    return list(groups.values())


def _options_for(cls: type, options: dict[str, Any]) -> dict[str, Any]:
    accepted = inspect.signature(cls.__init__).parameters
    return {k: v for k, v in options.items() if k in accepted}


def fused_adamw_supported(params: Iterable[Any]) -> bool:
    """Whether torch's fused AdamW kernel takes every one of `params` (floating point, on a device it has the
    kernel for: CUDA, CPU, ...)."""
    import torch
    from torch.optim.optimizer import _get_fused_kernels_supported_devices

    devices = set(_get_fused_kernels_supported_devices())
    params = list(params)
    return bool(params) and all(torch.is_floating_point(p) and p.device.type in devices for p in params)


def build_optimizer(plan: Any, tensors: list[tuple[Any, Any]], options: dict[str, Any]) -> Any:
    """The torch optimizer itself when the plan uses one that needs no help (all-AdamW plans are unchanged),
    a PlanOptimizer over one torch optimizer per kind otherwise. AdamW is fused wherever torch has the kernel for
    the parameters (1.11x per step on CPU) unless `fused` is given; `foreach` then reaches the other optimizers."""
    import torch

    built: dict[str, Any] = {}
    needs_help = False
    for kind in plan.optimizers():
        groups = param_groups(plan, tensors, kind, decoupled_sgd=True)
        needs_help |= any("scalec_shrink_wd" in g for g in groups)
        cls = getattr(torch.optim, OPTIMIZERS[kind].torch_class)
        if cls is torch.optim.Muon and all(p.device.type == "cpu" for g in groups for p in g["params"]):
            cls = muon_float32.Float32Muon  # torch's Muon iterates in bf16, 8.7x slower than fp32 on our CPUs
        kwargs = _options_for(cls, options)
        if cls is torch.optim.AdamW and options.get("fused") is None:
            if fused_adamw_supported(p for g in groups for p in g["params"]):
                kwargs = {**kwargs, "fused": True, "foreach": None}
        built[kind] = cls(groups, **kwargs)
    if len(built) == 1 and not needs_help:
        return next(iter(built.values()))
    return PlanOptimizer(built)


class PlanOptimizer:
    """Steps several torch optimizers as one: `param_groups` lists every group (the same dicts, so scale_lrs
    reaches them), state_dict/load_state_dict nest theirs by optimizer name, and SGD groups with momentum get
    their decoupled shrink lr_t * wd here."""

    def __init__(self, optimizers: dict[str, Any]) -> None:
        self.optimizers = dict(optimizers)

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return [g for o in self.optimizers.values() for g in o.param_groups]

    @property
    def state(self) -> dict[Any, Any]:
        merged: dict[Any, Any] = {}
        for o in self.optimizers.values():
            merged.update(o.state)
        return merged

    def zero_grad(self, set_to_none: bool = True) -> None:
        for o in self.optimizers.values():
            o.zero_grad(set_to_none=set_to_none)

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        import torch

        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        with torch.no_grad():
            for g in self.param_groups:
                wd = g.get("scalec_shrink_wd")
                if wd:
                    keep = 1.0 - float(g["lr"]) * wd
                    for p in g["params"]:
                        if p.grad is not None:
                            p.mul_(keep)
        for o in self.optimizers.values():
            o.step()
        return loss

    def state_dict(self) -> dict[str, Any]:
        return {"optimizers": {k: o.state_dict() for k, o in self.optimizers.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved = state.get("optimizers") if isinstance(state, dict) else None
        if not isinstance(saved, dict) or set(saved) != set(self.optimizers):
            have = ", ".join(self.optimizers)
            raise ValueError(f"optimizer state is not for a plan using {have}")
        for k, o in self.optimizers.items():
            o.load_state_dict(saved[k])

    def __repr__(self) -> str:
        return f"PlanOptimizer({', '.join(f'{k}: {len(o.param_groups)} groups' for k, o in self.optimizers.items())})"
