"""HF `Trainer` in one line: `Trainer(model, args, optimizers=scalec.integrations.hf.optimizers(model, RULE, ...))`.

`optimizers` reads the model's width, depth and head dimension from its config, plans and initialises it, hooks
in the forward multipliers it does not apply (a tied readout's 1/m_N, the residual branches', the attention scale;
each proved exact on a probe batch), and returns (optimizer, scheduler) with a transformers schedule that scales
every param group relative to its planned lr. The plan is `optimizer.scalec_plan`, the hooks
`optimizer.scalec_hooks` (`.remove()` restores the model's own forward).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from scalec.api import optimizer as plan_optimizer
from scalec.errors import ScalecError
from scalec.runtime import HOOKABLE, PlanOptimizer, apply_multipliers
from scalec.runtime.plan.model_shape import reveal

PROBE_TOKENS = 16  # length of the probe batch the hooks are proved on


class HFIntegrationError(ScalecError):
    """A model or schedule the HF recipe cannot take."""


def model_shape(model: Any) -> dict[str, float]:
    """{"n", "L", "d_head"} as the model's config states them (hidden_size, num_hidden_layers, head_dim or
    hidden_size / num_attention_heads)."""
    known = {axis: value for axis, (value, _) in reveal(model, []).items() if axis in ("n", "L", "d_head")}
    missing = [axis for axis in ("n", "L") if axis not in known]
    if missing or getattr(model, "config", None) is None:
        raise HFIntegrationError(
            f"error: {type(model).__name__} has no config stating its {' and '.join(missing or ['shape'])}; pass "
            "shape={'n': ..., 'L': ..., 'd_head': ...}"
        )
    return known


def _probe(model: Any) -> torch.Tensor:
    vocab = getattr(model.config, "vocab_size", None)
    if not isinstance(vocab, int) or vocab < 1:
        raise HFIntegrationError(
            f"error: {type(model).__name__}.config has no vocab_size to draw a probe batch from; pass probe=<ids>"
        )
    device = next(model.parameters()).device
    return torch.randint(0, vocab, (1, PROBE_TOKENS), generator=torch.Generator().manual_seed(0)).to(device)


class PlanSchedulers:
    """One transformers schedule per torch optimizer of a PlanOptimizer (Muon or SGD roles beside AdamW), stepped
    together: torch's schedulers take only torch optimizers."""

    def __init__(self, schedulers: Mapping[str, Any]) -> None:
        self.schedulers = dict(schedulers)

    def step(self, *args: Any, **kwargs: Any) -> None:
        for s in self.schedulers.values():
            s.step(*args, **kwargs)

    def get_last_lr(self) -> list[float]:
        return [lr for s in self.schedulers.values() for lr in s.get_last_lr()]

    def state_dict(self) -> dict[str, Any]:
        return {k: s.state_dict() for k, s in self.schedulers.items()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for k, s in self.schedulers.items():
            s.load_state_dict(state[k])


def schedule(opt: Any, name: str, num_training_steps: int, num_warmup_steps: int = 0, **kwargs: Any) -> Any:
    """transformers' schedule `name` ("linear", "cosine", "constant_with_warmup", ...) on `opt`: each group's lr is
    its planned lr times the schedule's factor (LambdaLR keeps the lr it finds as the group's `initial_lr`)."""
    from transformers import get_scheduler

    def one(o: Any) -> Any:
        return get_scheduler(name, o, num_warmup_steps, num_training_steps, scheduler_specific_kwargs=kwargs or None)

    if isinstance(opt, PlanOptimizer):
        return PlanSchedulers({k: one(o) for k, o in opt.optimizers.items()})
    return one(opt)


def optimizers(
    model: Any,
    rule: Any,
    hp: Mapping[str, float] | Any = None,
    *,
    num_training_steps: int,
    num_warmup_steps: int = 0,
    schedule_name: str = "linear",
    shape: Mapping[str, float] | None = None,
    roles: Mapping[str, str] | None = None,
    preset: str | None = "auto",
    hooks: bool = True,
    probe: Any = None,
    **torch_options: Any,
) -> tuple[Any, Any]:
    """(optimizer, scheduler) for `Trainer(optimizers=...)`, the model planned under `rule` and initialised.

    shape: axes beyond (or instead of) the config's n, L, d_head, e.g. {"B": tokens per step, "D": tokens}.
    hooks: apply every multiplier a hook can (exact, proved on `probe`, default random ids) and fold the rest
    (per-role multipliers); hooks=False folds everything and refuses what cannot fold (as make_plan does)."""
    axes = {**model_shape(model), **(shape or {})}
    opt = plan_optimizer(
        model,
        rule,
        axes,
        hp,
        roles=roles,
        preset=preset,
        applied_sites=HOOKABLE if hooks else None,
        fold=True,
        **torch_options,
    )
    opt.scalec_hooks = apply_multipliers(model, opt.scalec_plan, example=_probe(model) if probe is None else probe)
    return opt, schedule(opt, schedule_name, num_training_steps, num_warmup_steps)
