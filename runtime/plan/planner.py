"""The runtime plan: per parameter the init, AdamW settings and forward multiplier a parameterisation
prescribes at one shape, as plain JSON-serialisable data; plus the model's forward multipliers.

Nothing is stored on tensors: `init_`, `param_groups` and `check_model` look parameters up by normalised name,
so a plan made on the bare model applies under torch.compile, DDP and FSDP.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from scalec.errors import ScalecError
from scalec.runtime.plan.binding import _listing, bind, unique_parameters


class PlanError(ScalecError):
    """A plan cannot be made (bad shape or HP) or does not fit the model it is applied to."""


@dataclass(frozen=True)
class PlanEntry:
    """What one parameter tensor gets: init N(init_mean, init_std), AdamW lr / coupled weight_decay /
    betas / eps, and its forward multiplier `mult` (applied by the model, see `Plan.multipliers`)."""

    name: str
    shape: tuple[int, ...]
    role: str
    init_mean: float
    init_std: float
    lr: float
    weight_decay: float
    betas: tuple[float, float]
    eps: float
    mult: float
    fan_in: int = 0
    fan_out: int = 0
    tied_with: tuple[str, ...] = field(default=())

    def optim_key(self) -> tuple[float, float, tuple[float, float], float]:
        """The settings AdamW groups are merged on."""
        return (self.lr, self.weight_decay, self.betas, self.eps)


@dataclass
class Plan:
    """Per-parameter entries plus forward multipliers (sites and `mult[<role>]` for roles with mult != 1)."""

    rule: str
    axes: dict[str, float]
    entries: list[PlanEntry]
    multipliers: dict[str, float]
    preset: str = ""

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
                f"lacks planned parameter(s) {_listing(missing)}"
                if missing
                else f"has unplanned parameter(s) {_listing(extra)}"
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

    def param_groups(self, model: Any) -> list[dict[str, Any]]:
        """AdamW param groups, one per distinct (lr, weight_decay, betas, eps); each carries `base_lr` (for
        `schedule.scale_lrs`) and the sorted `roles` it holds."""
        groups: dict[tuple, dict[str, Any]] = {}
        for e, p in self._tensors(model):
            g = groups.get(e.optim_key())
            if g is None:
                g = groups[e.optim_key()] = {
                    "params": [],
                    "lr": e.lr,
                    "base_lr": e.lr,
                    "weight_decay": e.weight_decay,
                    "betas": tuple(e.betas),
                    "eps": e.eps,
                    "roles": [],
                }
            g["params"].append(p)
            if e.role not in g["roles"]:
                g["roles"].append(e.role)
        for g in groups.values():
            g["roles"].sort()
        return list(groups.values())

    def to_dict(self) -> dict[str, Any]:
        """Plain data: {"rule", "axes", "preset", "parameters": [...], "multipliers": {...}}."""
        params = []
        for e in self.entries:
            d = asdict(e)
            d["shape"], d["betas"], d["tied_with"] = list(e.shape), list(e.betas), list(e.tied_with)
            params.append(d)
        return {
            "rule": self.rule,
            "axes": dict(self.axes),
            "preset": self.preset,
            "parameters": params,
            "multipliers": dict(self.multipliers),
        }

    def to_json(self, indent: int | None = 2) -> str:
        """JSON text of `to_dict()`."""
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Plan:
        """Inverse of `to_dict`."""
        names = {f.name for f in dataclasses.fields(PlanEntry)}
        entries = [
            PlanEntry(
                **{
                    **{k: v for k, v in d.items() if k in names},
                    "shape": tuple(d["shape"]),
                    "betas": tuple(d["betas"]),
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
        )

    @classmethod
    def from_json(cls, text: str) -> Plan:
        """Inverse of `to_json`."""
        return cls.from_dict(json.loads(text))


def _module_of(rules: Any) -> Any:
    """The generated module behind a Parameterisation (duck-typed on `.module`) or the module itself."""
    module = getattr(rules, "module", rules)
    if not hasattr(module, "role_hparams") or not hasattr(module, "Shape"):
        raise PlanError(
            f"error: {type(rules).__name__} is not a parameterisation; pass scalec.load('<rule>') or a generated module"
        )
    return module


def resolve_shape(module: Any, shape: Any) -> Any:
    """A module.Shape from a Shape or a dict of axis values (missing axes take base values), checked as
    `p.shape` checks it (compiler/parameterisation.make_shape)."""
    from scalec.compiler.parameterisation import make_shape

    if isinstance(shape, Mapping):
        axes = {f.name for f in dataclasses.fields(module.Shape)}
        unknown = sorted(set(shape) - axes)
        if unknown:
            raise PlanError(f"error: unknown axis '{unknown[0]}' in the shape; axes: {', '.join(sorted(axes))}")
    elif isinstance(shape, module.Shape):
        shape = dataclasses.asdict(shape)
    else:
        raise PlanError(
            f"error: shape must be a {module.NAME} Shape or a dict of axis values, not {type(shape).__name__}"
        )
    try:
        return make_shape(module, shape)
    except ScalecError as exc:
        raise PlanError(f"error: shape: {str(exc).removeprefix('error: ')}") from None


def resolve_hparams(module: Any, hp: Any) -> Any:
    """module.HParams from None (defaults), an HParams, or a dict of HP values by name, checked as `p.hparams`
    checks them (compiler/parameterisation.make_hparams)."""
    from scalec.compiler.parameterisation import make_hparams

    if hp is None or isinstance(hp, module.HParams):
        return hp
    if not isinstance(hp, Mapping):
        raise PlanError(f"error: hp must be HParams or a dict of HP values, not {type(hp).__name__}")
    try:
        return make_hparams(module, hp)
    except ScalecError as exc:
        raise PlanError(str(exc)) from None


def make_plan(
    rules: Any,
    model: Any,
    shape: Any,
    hp: Any = None,
    preset: str | None = "auto",
    patterns: Mapping[str, str] | None = None,
    base_model: Any = None,
) -> Plan:
    """Plan every parameter of `model` under `rules` (scalec.load(...) or a generated module) at `shape`."""
    module = _module_of(rules)
    shape = resolve_shape(module, shape)
    hp = resolve_hparams(module, hp)
    bound = bind(model, preset=preset, patterns=patterns, base_model=base_model, roles=module.ROLES)
    per_role = {role: module.role_hparams(role, shape, hp) for role in sorted({b.role for b in bound})}
    for role, r in per_role.items():
        for f in dataclasses.fields(r):
            value = getattr(r, f.name)
            negative = f.name in ("init_std", "lr", "weight_decay", "eps") and value < 0
            bad_beta = f.name in ("beta1", "beta2") and not 0 <= value < 1
            beyond_float32 = abs(value) > 3.4028234663852886e38  # torch's optimizers hold it as a float32
            if not math.isfinite(value) or beyond_float32 or negative or bad_beta:
                raise PlanError(
                    f"error: role '{role}' gets {f.name} = {value} at this shape; check the hp values and the shape"
                )
    entries = []
    for b in bound:
        r = per_role[b.role]
        entries.append(
            PlanEntry(
                name=b.name,
                shape=b.shape,
                role=b.role,
                init_mean=float(r.init_mean),
                init_std=float(r.init_std),
                lr=float(r.lr),
                weight_decay=float(r.weight_decay),
                betas=(float(r.beta1), float(r.beta2)),
                eps=float(r.eps),
                mult=float(r.mult),
                fan_in=b.fan_in,
                fan_out=b.fan_out,
                tied_with=b.tied_with,
            )
        )
    multipliers = {k: float(v) for k, v in module.sites(shape, hp).as_dict().items()}
    for role in module.ROLES:
        mult = float(per_role[role].mult if role in per_role else module.role_hparams(role, shape, hp).mult)
        if mult != 1.0:
            multipliers[f"mult[{role}]"] = mult
    presets = sorted({b.source for b in bound})
    return Plan(
        rule=str(module.NAME),
        axes=dataclasses.asdict(shape),
        entries=entries,
        multipliers=multipliers,
        preset=",".join(presets),
    )
