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

from scalec.compiler.domain import first_violation
from scalec.compiler.folding import FOLD_TARGETS, apply_symmetry, folded_module
from scalec.errors import ScalecError
from scalec.runtime.plan.binding import BoundParam, bind, listing_text, unique_parameters, unwrap
from scalec.runtime.plan.model_shape import mismatch


class PlanError(ScalecError):
    """A plan cannot be made (bad shape or HP) or does not fit the model it is applied to."""


@dataclass(frozen=True)
class PlanEntry:
    """What one parameter tensor gets: init N(init_mean, init_std), its optimizer (adamw, sgd or muon) with lr,
    weight_decay and that optimizer's own settings (betas/eps for adamw, momentum/nesterov for sgd, plus
    eps/ns_steps/adjust_lr for muon; None where it has none), and its forward multiplier `mult` (applied by the
    model, see `Plan.multipliers`). weight_decay is always torch's decoupled form, a per-step shrink
    lr_t * weight_decay; `decay` records the file's convention (independent decay arrives divided by lr)."""

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
        from scalec.runtime.plan.optimizer import param_groups

        return param_groups(self, self._tensors(model), optimizer)

    def optimizer(self, model: Any, **torch_options: Any) -> Any:
        """One optimizer object that steps every planned parameter with its own optimizer (torch.optim.AdamW,
        SGD, Muon), with `param_groups` that scale_lrs drives and state_dict/load_state_dict for checkpoints.
        `torch_options` (fused, foreach) reach the torch optimizers that take them."""
        from scalec.runtime.plan.optimizer import build_optimizer

        return build_optimizer(self, self._tensors(model), torch_options)

    def to_dict(self) -> dict[str, Any]:
        """Plain data: {"rule", "axes", "preset", "parameters": [...], "multipliers": {...}}."""
        params = []
        for e in self.entries:
            d = asdict(e)
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
        """Inverse of `to_dict`."""
        names = {f.name for f in dataclasses.fields(PlanEntry)}
        entries = [
            PlanEntry(
                **{
                    **{k: v for k, v in d.items() if k in names},
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


def _block_index(name: str) -> int:
    """The 0-based block index of a parameter: the first all-digit segment of its name (blocks.3.attn.q.weight)."""
    for segment in name.split("."):
        if segment.isdigit():
            return int(segment)
    raise PlanError(f"error: parameter '{name}' has no block index in its name, but its role's rules use l")


def _role_values(module: Any, key: tuple, shape: Any, hp: Any) -> Any:
    role, fan_in, fan_out, layer = key
    if not hasattr(module, "LAYERED_ROLES"):  # a module generated before per-tensor symbols
        return module.role_hparams(role, shape, hp)
    try:
        return module.role_hparams(role, shape, hp, fan_in=fan_in or None, fan_out=fan_out or None, layer=layer)
    except ValueError as exc:  # the module's ShapeError, HParamError, DomainError: a value outside its domain
        raise PlanError(f"error: {exc}") from None


def _role_mult(module: Any, role: str, per_key: dict, layered: Any, shape: Any, hp: Any) -> float:
    """The one forward multiplier of `role` (the model applies one per role): equal across its bound tensors."""
    mults = {float(v.mult) for k, v in per_key.items() if k[0] == role}
    if len(mults) > 1:
        raise PlanError(
            f"error: role '{role}' gets forward multipliers {sorted(mults)} across its tensors; the model applies "
            "one per role, so a mult rule may not depend on fan_in, fan_out or l"
        )
    if not mults:
        mults = {float(_role_values(module, (role, 0, 0, 0 if role in layered else None), shape, hp).mult)}
    return mults.pop()


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


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


SITE_ROLES = {
    "residual.attn": ("attn.q", "attn.k", "attn.v", "attn.o"),
    "residual.mlp": ("mlp.up", "mlp.gate", "mlp.down"),
    "attn.scale": ("attn.q", "attn.k"),
    "output.mult": ("unembed",),
    "embed.mult": ("embed",),
}
NORM_ROLES = ("norm", "qk_norm", "final_norm")


def _applies_everything(model: Any) -> bool:
    """The bundled GPT takes every site and per-role multiplier (its `multipliers` argument)."""
    cls = type(unwrap(model))
    return cls.__name__ == "GPT" and cls.__module__ == "scalec.runtime.trainer.gpt"


def _applied(applied_sites: Any, model: Any, known: set[str]) -> set[str]:
    if applied_sites is None:
        return set(known) if _applies_everything(model) else set()
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


def _tied_readout_mult(module: Any, shape: Any, hp: Any) -> float:
    """The readout multiplier of a tensor shared by embedding and readout (mup's MuSharedReadout): the tensor
    trains as the embedding, so the logits need the readout's whole multiplier times how much faster the
    readout's lr scales than the embedding's (mult * lr is what the abc-symmetry preserves): 1/m_N under muP in
    either form, and under Complete(d)P."""
    u, e = module.role_hparams("unembed", shape, hp), module.role_hparams("embed", shape, hp)
    u0, e0 = module.role_hparams("unembed", module.BASE, hp), module.role_hparams("embed", module.BASE, hp)
    out = module.sites(shape).output_mult
    return float(u.mult * out * (u.lr / u0.lr) / (e.lr / e0.lr))


def _obstacle(
    site: str, bound: list[BoundParam], roles: set[str], tied: list[BoundParam], optimizers: Mapping[str, tuple]
) -> str | None:
    """Why `site` cannot be folded exactly into this model, or None."""
    target = FOLD_TARGETS[site][0] if site in FOLD_TARGETS else site[5:-1] if site.startswith("mult[") else None
    optimizer, decay = optimizers.get(target, ("adamw", "coupled"))
    if optimizer == "sgd" or decay == "independent":
        return (
            f"{target} trains with {optimizer} ({decay} weight decay), whose symmetry is not the Adam one folding "
            "uses (SGD: lr x c^2, wd / c^2; independent decay: wd unchanged)"
        )
    guessed = [b for b in bound if b.source == "inferred" and b.width_class == "hidden"]
    if site in ("residual.attn", "residual.mlp", "attn.scale") and guessed:
        why = guessed[0].ambiguity or "roles inferred from width alone"
        return (
            f"the module graph did not decide which matrices end the residual branches ({why}); name them with "
            "patterns={'<glob>': 'attn.o' / 'mlp.down' / 'attn.q'}"
        )
    if site in ("output.mult", "embed.mult", "mult[embed]") and tied:
        t = tied[0]
        return (
            f"the readout shares its tensor with the embedding ('{t.tied_with[0]}' = '{t.name}'), which trains as "
            "the embedding (as mup's MuSharedReadout)"
        )
    target = FOLD_TARGETS[site][0] if site in FOLD_TARGETS else None
    if target is not None and target not in roles:
        return f"no parameter is bound as {target}, the tensor it would fold into"
    if site == "attn.scale":
        if "qk_norm" in roles:
            return "QK-norm normalises the queries after the projection"
        fused = next((b for b in bound if b.role == "attn.q" and (b.fused or b.fan_out > b.fan_in)), None)
        if fused is not None:
            return f"'{fused.name}' holds the keys and values too (a fused qkv)"
    return None


def _refusal(rule: str, model: Any, pending: list[tuple[str, float, str | None]], fold: bool) -> PlanError:
    """One line: every multiplier the model would drop, why any cannot be folded, and the fixes."""
    parts = [f"{s} = {v:.6g}" + (f" (cannot be folded: {why})" if why else "") for s, v, why in pending]
    names = "{" + ", ".join(repr(s) for s, _, _ in pending) + "}"
    fix = f"apply {'it' if len(pending) == 1 else 'them'} in the model and pass applied_sites={names}"
    if not fold and all(why is None for _, _, why in pending):
        fix = f"pass fold=True (scalec.load(..., fold=True)) to fold them into init and lr, or {fix}"
    cls = type(unwrap(model)).__name__
    return PlanError(f"error: {rule} needs forward multiplier(s) {'; '.join(parts)} that {cls} does not apply; {fix}")


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

    applied_sites: the forward multipliers the model (or the caller's hooks) applies: None = the default (the
    bundled GPT applies every site, any other model none), "all", or site names ("output.mult",
    "residual.attn", "mult[mlp.gate]", ...). Every other non-unit multiplier is folded into init and lr when
    `fold` (default: `scalec.load(..., fold=True)`) and the Adam abc-symmetry makes that exact, else refused.
    """
    module = _module_of(rules)
    shape = resolve_shape(module, shape)
    hp = resolve_hparams(module, hp)
    if hp is not None:  # the region's constraints may depend on the HPs (Complete(d)P: steps >= S0 * (1-beta1))
        try:
            module.check_shape(shape, hp)
        except module.ShapeError as exc:
            raise PlanError(f"error: shape: {exc}") from None
        except ValueError as exc:  # the module's HParamError: an HP outside its domain
            raise PlanError(f"error: {exc}") from None
    bound = bind(
        model, preset=preset, patterns=patterns, base_model=base_model, roles=module.ROLES, example_input=example_input
    )
    wrong = mismatch(model, bound, shape)
    if wrong:
        raise PlanError(f"error: {wrong}")
    fold = bool(getattr(rules, "fold", False)) if fold is None else bool(fold)
    roles = {b.role for b in bound}
    # Rules may use each tensor's fans and block index (fan_in, fan_out, l): values per (role, fans, block).
    layered = getattr(module, "LAYERED_ROLES", frozenset())
    keys = {b.name: (b.role, b.fan_in, b.fan_out, _block_index(b.name) if b.role in layered else None) for b in bound}
    unfolded = {k: _role_values(module, k, shape, hp) for k in sorted(set(keys.values()), key=str)}
    sites = {k: float(v) for k, v in module.sites(shape).as_dict().items()}
    role_mults = {r: _role_mult(module, r, unfolded, layered, shape, hp) for r in module.ROLES}
    optimizers = {k[0]: (getattr(r, "optimizer", "adamw"), getattr(r, "decay", "coupled")) for k, r in unfolded.items()}
    known = set(sites) | {f"mult[{r}]" for r in module.ROLES}
    applied = _applied(applied_sites, model, known)
    tied = [b for b in bound if b.role == "embed" and "unembed" in b.tied_roles]
    if tied:  # the readout's whole multiplier is the output site; the shared tensor trains as the embedding
        sites["output.mult"] = _tied_readout_mult(module, shape, hp)
        role_mults["unembed"] = 1.0
    guessing = any(b.source == "inferred" and b.width_class == "hidden" for b in bound)
    identity = {"attn.scale": float(shape.d_head) ** -0.5}
    pending: list[tuple[str, float, str | None]] = []
    candidates = [(s, v, SITE_ROLES[s]) for s, v in sites.items()]
    candidates += [(f"mult[{r}]", m, (r,)) for r, m in role_mults.items()]
    for site, value, site_roles in candidates:
        relevant = bool(roles & set(site_roles)) or (site == "output.mult" and bool(tied))
        relevant = relevant or (guessing and site in ("residual.attn", "residual.mlp", "attn.scale"))
        if not relevant or site in applied or math.isclose(value, identity.get(site, 1.0), rel_tol=1e-12):
            continue
        pending.append((site, value, _obstacle(site, bound, roles, tied, optimizers)))
    if pending and (not fold or any(why for _, _, why in pending)):
        raise _refusal(str(module.NAME), model, pending, fold)
    site_folds = tuple(sorted(s for s, _, _ in pending if s in FOLD_TARGETS))
    folded_lines: list[str] = []
    planning = module
    if site_folds:
        if getattr(rules, "ir", None) is None:
            raise PlanError(
                f"error: folding {', '.join(site_folds)} needs the rule's IR; pass scalec.load('<rule>', fold=True) "
                "instead of a generated module"
            )
        planning, lines = folded_module(rules, site_folds)
        folded_lines.extend(lines)
    # Per parameter: the factor it absorbs (the bias of a folded linear with its weight; a role's own mult).
    factors: dict[str, float] = {}
    by_name = {b.name: b for b in bound}
    for site in site_folds:
        target = FOLD_TARGETS[site][0]
        c = sites[site] / identity.get(site, 1.0)
        for b in bound:
            if b.role == target and b.name.endswith(".weight"):
                bias = by_name.get(b.name.removesuffix("weight") + "bias")
                if bias is not None:
                    factors[bias.name] = factors.get(bias.name, 1.0) * c
                    folded_lines.append(f"{site} -> bias '{bias.name}' (x {c:.6g})")
    role_folds = {s[5:-1]: v for s, v, _ in pending if s.startswith("mult[")}
    for role, c in role_folds.items():
        folded_lines.append(f"mult[{role}] -> {role} (x {c:.6g})")
    per_key = unfolded if planning is module else {k: _role_values(planning, k, shape, hp) for k in unfolded}
    for (role, *_), r in per_key.items():
        bad = first_violation(r)  # the checker's domains (compiler/domain.py)
        if bad is not None:
            kind, value, why = bad
            raise PlanError(
                f"error: role '{role}' gets {kind} = {value} at this shape, {why}; check the hp values and the shape"
            )
    entries = []
    for b in bound:
        r = per_key[keys[b.name]]
        optimizer = getattr(r, "optimizer", "adamw")
        if optimizer == "muon" and len(b.shape) != 2:
            raise PlanError(
                f"error: parameter '{b.name}' (role {b.role}, shape {list(b.shape)}) uses muon, which takes 2-D "
                "matrices only; bind it to a role that uses adamw or sgd"
            )
        decay = getattr(r, "decay", "coupled")
        values = {k: float(getattr(r, k)) for k in ("init_mean", "init_std", "lr", "weight_decay", "mult")}
        values["eps"] = _opt_float(r.eps)
        if b.role in NORM_ROLES and b.name.endswith(".bias"):
            values["init_mean"] = 0.0  # a norm's shift starts at 0; the rule's init_mean is its gain's
        if b.role in role_folds:  # folding refuses roles without Adam's symmetry (_obstacle), so eps is a number
            values = {**apply_symmetry(values, role_folds[b.role]), "mult": 1.0}
        if b.name in factors:
            values = apply_symmetry(values, factors[b.name])
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
    multipliers = {k: float(v) for k, v in planning.sites(shape).as_dict().items()}
    if tied:
        multipliers["output.mult"] = sites["output.mult"]
    for role in module.ROLES:
        if role in role_folds or (tied and role == "unembed"):
            continue
        mult = role_mults[role] if planning is module else _role_mult(planning, role, per_key, layered, shape, hp)
        if mult != 1.0:
            multipliers[f"mult[{role}]"] = mult
    presets = sorted({b.source for b in bound})
    return Plan(
        rule=str(planning.NAME),
        axes=dataclasses.asdict(shape),
        entries=entries,
        multipliers=multipliers,
        preset=",".join(presets),
        folded=folded_lines,
    )
