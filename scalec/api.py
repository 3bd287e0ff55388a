"""One line from a rule to a training-ready model: `scalec.optimizer(model, RULE, shape, hp)` binds the model,
plans it, initialises it and returns the torch optimizer a training loop (or HF `Trainer`) already expects.

The plan stays with the optimizer as `opt.scalec_plan`: it is the record of what every param group holds (the
schedule's `base_lr`, the roles) and of the forward multipliers left to the model (`scalec.apply_multipliers`),
and the optimizer is the one object every trainer passes around. `scalec.plan` is the same planning without the
init and the optimizer (to inspect or save a plan first).
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping
from typing import Any

from scalec.lazy_module import lazy_module
from scalec.runtime import Plan, make_plan

parameterisation = lazy_module("scalec.compiler.parameterisation")  # only for a rule given by name or path


def _rules(rule: Any) -> Any:
    """A bundled rule name or a .scale path is loaded (checked and compiled); a loaded rule passes as is."""
    return parameterisation.load(rule) if isinstance(rule, (str, os.PathLike)) else rule


def plan(
    model: Any,
    rule: Any,
    shape: Mapping[str, float] | Any,
    hp: Mapping[str, float] | Any = None,
    *,
    roles: Mapping[str, str] | None = None,
    preset: str | None = "auto",
    base_model: Any = None,
    applied_sites: Collection[str] | str | None = None,
    fold: bool | None = None,
    example_input: Any = None,
) -> Plan:
    """The plan of `model` under `rule` (a bundled name, a .scale path or `scalec.load(...)`) at `shape` with `hp`:
    `make_plan` with `roles` ({glob: role}) as its `patterns`; refuses exactly where make_plan does."""
    return make_plan(
        _rules(rule),
        model,
        shape,
        hp,
        preset=preset,
        patterns=roles,
        base_model=base_model,
        applied_sites=applied_sites,
        fold=fold,
        example_input=example_input,
    )


def optimizer(
    model: Any,
    rule: Any,
    shape: Mapping[str, float] | Any,
    hp: Mapping[str, float] | Any = None,
    *,
    roles: Mapping[str, str] | None = None,
    preset: str | None = "auto",
    base_model: Any = None,
    applied_sites: Collection[str] | str | None = None,
    fold: bool | None = None,
    example_input: Any = None,
    init: bool = True,
    generator: Any = None,
    **torch_options: Any,
) -> Any:
    """Plan `model` (as `scalec.plan`), initialise it in place (unless `init=False`, e.g. before loading a
    checkpoint) and return its optimizer: torch.optim.AdamW with one param group per distinct setting, or the
    plan's `PlanOptimizer` when a role trains with Muon or SGD. `torch_options` (fused, foreach) reach the torch
    optimizers that take them. The plan is `opt.scalec_plan`."""
    p = plan(
        model,
        rule,
        shape,
        hp,
        roles=roles,
        preset=preset,
        base_model=base_model,
        applied_sites=applied_sites,
        fold=fold,
        example_input=example_input,
    )
    if init:
        p.init_(model, generator=generator)
    opt = p.optimizer(model, **torch_options)
    opt.scalec_plan = p
    return opt
