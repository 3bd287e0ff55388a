"""A plan as plain data: per parameter the init, optimizer settings and forward multiplier a parameterisation
prescribes at one shape, plus the model's forward multipliers; its JSON form; and applying it to a model
(`init_`, `param_groups`, `optimizer`).

Nothing is stored on tensors: `init_`, `param_groups` and `check_model` look parameters up by normalised name,
so a plan made on the bare model applies under torch.compile, DDP and FSDP.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from scalec.runtime.plan.model_params import listing_text, unique_parameters
from scalec.runtime.plan.optimizer import build_optimizer, param_groups
from scalec.runtime.plan.plan_error import PlanError

__all__ = ["Plan", "PlanEntry", "PlanError"]


@dataclass(frozen=True)
class PlanEntry:
    """What one parameter tensor gets: init N(init_mean, init_std), its optimizer (adamw, sgd or muon) with lr,
    weight_decay and that optimizer's own settings (betas/eps for adamw, momentum/nesterov for sgd, plus
    eps/ns_steps/adjust_lr for muon; None where it has none), and its forward multiplier `mult` (applied by the
    model, see `Plan.multipliers`).

    Weight decay, one meaning per number: `weight_decay` is what torch's optimizer receives, its decoupled form
    (a per-step shrink lr_t * weight_decay; JSON key `weight_decay_torch`); `weight_decay_rule` is the rule's value
    in the rule's own convention `decay` (coupled: the same number; independent: the shrink per step at schedule
    factor 1, so weight_decay = weight_decay_rule / lr)."""

    name: str
    shape: tuple[int, ...]
    role: str
    init_mean: float
    init_std: float
    lr: float
    weight_decay: float
    betas: tuple[float, float] | None
    eps: float | None
    mult: float
    fan_in: int = 0
    fan_out: int = 0
    tied_with: tuple[str, ...] = field(default=())
    optimizer: str = "adamw"
    decay: str = "coupled"
    momentum: float | None = None
    nesterov: bool | None = None
    ns_steps: int | None = None
    adjust_lr: str | None = None
    weight_decay_rule: float | None = None  # None only in plans written before the field existed

    def optim_key(self) -> tuple:
        """The settings param groups are merged on ((lr, weight_decay, betas, eps) for AdamW)."""
        key = (self.lr, self.weight_decay, self.betas, self.eps)
        if self.optimizer == "adamw":
            return key
        return (self.optimizer, *key, self.momentum, self.nesterov, self.ns_steps, self.adjust_lr)


@dataclass
class Plan:
    """Per-parameter entries plus forward multipliers (sites and `mult[<role>]` for roles with mult != 1)."""

    rule: str
    axes: dict[str, float]
    entries: list[PlanEntry]
    multipliers: dict[str, float]
    preset: str = ""
    folded: list[str] = field(default_factory=list)  # what make_plan folded into init and lr, and by how much

    def entry(self, name: str) -> PlanEntry:
        """The entry of a (normalised) parameter name."""
        for e in self.entries:
            if e.name == name:
                return e
        raise KeyError(name)

    def check_model(self, model: Any) -> None:
        """Raise PlanError unless `model` has exactly the planned parameters with the planned shapes."""
        planned = {e.name: e for e in self.entries}
        actual = {name: tuple(int(d) for d in p.shape) for name, p, _ in unique_parameters(model)}
        missing, extra = [n for n in planned if n not in actual], [n for n in actual if n not in planned]
        if missing or extra:
            what = (
                f"lacks planned parameter(s) {listing_text(missing)}"
                if missing
                else f"has unplanned parameter(s) {listing_text(extra)}"
            )
            raise PlanError(f"error: the model {what}; make the plan from this model (make_plan(..., model))")
        for name, shape in actual.items():
            if shape != tuple(planned[name].shape):
                raise PlanError(
                    f"error: parameter '{name}' has shape {list(shape)} but the plan was made for "
                    f"{list(planned[name].shape)}; make the plan for this model's shape"
                )

    def _tensors(self, model: Any) -> list[tuple[PlanEntry, Any]]:
        self.check_model(model)
        tensors = {name: p for name, p, _ in unique_parameters(model)}
        return [(e, tensors[e.name]) for e in self.entries]

    def init_(self, model: Any, generator: Any = None) -> Any:
        """Initialise every planned parameter in place: N(init_mean, init_std^2), or constant init_mean when
        init_std is 0. Returns the model."""
        import torch

        with torch.no_grad():
            for e, p in self._tensors(model):
                if e.init_std == 0:
                    p.fill_(e.init_mean)
                else:
                    p.normal_(e.init_mean, e.init_std, generator=generator)
        return model

    def optimizers(self) -> list[str]:
        """The optimizers the plan's parameters use, in first-use order."""
        return list(dict.fromkeys(e.optimizer for e in self.entries))

    def param_groups(self, model: Any, optimizer: str | None = None) -> list[dict[str, Any]]:
        """Param groups for one torch optimizer, one per distinct setting, carrying only that optimizer's keys
        (an SGD group has no betas), `base_lr` (for `schedule.scale_lrs`) and the sorted `roles` it holds.

        `optimizer` picks which optimizer's parameters (needed when the plan uses several: `plan.optimizer(model)`
        steps them all)."""
        return param_groups(self, self._tensors(model), optimizer)

    def optimizer(self, model: Any, **torch_options: Any) -> Any:
        """One optimizer object that steps every planned parameter with its own optimizer (torch.optim.AdamW,
        SGD, Muon), with `param_groups` that scale_lrs drives and state_dict/load_state_dict for checkpoints.
        `torch_options` (fused, foreach) reach the torch optimizers that take them."""
        return build_optimizer(self, self._tensors(model), torch_options)

    def to_dict(self) -> dict[str, Any]:
        """Plain data: {"rule", "axes", "preset", "parameters": [...], "multipliers": {...}}; each parameter's
        weight decay as `weight_decay_torch` (what torch receives) and `weight_decay_rule` (in `decay`'s convention)."""
        params = []
        for e in self.entries:
            d = {("weight_decay_torch" if k == "weight_decay" else k): v for k, v in asdict(e).items()}
            d["shape"], d["tied_with"] = list(e.shape), list(e.tied_with)
            d["betas"] = list(e.betas) if e.betas is not None else None
            params.append(d)
        return {
            "rule": self.rule,
            "axes": dict(self.axes),
            "preset": self.preset,
            "parameters": params,
            "multipliers": dict(self.multipliers),
            "folded": list(self.folded),
        }

    def to_json(self, indent: int | None = 2) -> str:
        """JSON text of `to_dict()`."""
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Plan:
        """Inverse of `to_dict` (also reads the single `weight_decay` key of plans written before the split)."""
        names = {f.name for f in dataclasses.fields(PlanEntry)}
        entries = [
            PlanEntry(
                **{
                    **{k: v for k, v in d.items() if k in names},
                    "weight_decay": d["weight_decay_torch"] if "weight_decay_torch" in d else d["weight_decay"],
                    "shape": tuple(d["shape"]),
                    "betas": tuple(d["betas"]) if d.get("betas") is not None else None,
                    "tied_with": tuple(d.get("tied_with", ())),
                }
            )
            for d in data["parameters"]
        ]
        return cls(
            rule=data.get("rule", ""),
            axes=dict(data.get("axes", {})),
            entries=entries,
            multipliers=dict(data.get("multipliers", {})),
            preset=data.get("preset", ""),
            folded=list(data.get("folded", [])),
        )

    @classmethod
    def from_json(cls, text: str) -> Plan:
        """Inverse of `to_json`."""
        return cls.from_dict(json.loads(text))
