"""Bind every parameter of a model to a role by normalised name and glob patterns (never tensor attributes).

Names are normalised by dropping wrapper segments (`module.` of DDP, `_orig_mod.` of torch.compile,
`_fsdp_wrapped_module.` / `_checkpoint_wrapped_module.` of FSDP1 and activation checkpointing), so a plan made
on the bare model applies to the wrapped one. Tied weights (one tensor under several names) are planned once,
under the name `named_parameters()` yields first. Rule (the `mup` package's MuSharedReadout semantics): when any
of its names binds to `embed`, it takes the `embed` role (init and lr of the embedding); the readout's
multiplier stays a forward site of the plan (`tied_roles` records what the other names bind to).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from scalec.compiler.vocabulary import ROLES
from scalec.runtime.plan.model_params import (
    BindingError,
    BoundParam,
    fans,
    listing_text,
    module_layouts,
    unique_parameters,
    unwrap,
)
from scalec.runtime.plan.presets import PRESETS, Preset, Rule, detect_preset
from scalec.runtime.plan.shape_inference import infer_roles


def _matching_roles(name: str, rules: list[Rule]) -> list[Rule]:
    return [r for r in rules if fnmatchcase(name, r.pattern)]


def resolve_preset(model: Any, preset: str | None, names: list[str]) -> Preset | None:
    """The Preset object for `preset` ("auto", a preset name, or None for patterns only)."""
    if preset is None or preset in ("infer", "none"):
        return None
    if preset == "auto":
        return detect_preset(unwrap(model), names)
    if preset not in PRESETS:
        raise BindingError(
            f"error: unknown preset '{preset}'; use one of {', '.join(PRESETS)}, 'auto' or "
            "'infer' (with base_model=...)"
        )
    return PRESETS[preset]


def bind(
    model: Any,
    preset: str | None = "auto",
    patterns: Mapping[str, str] | None = None,
    base_model: Any = None,
    roles: Mapping[str, str] | None = None,
    example_input: Any = None,
) -> list[BoundParam]:
    """Bind each distinct parameter of `model` to a role; `patterns` ({glob: role}) take precedence over the
    preset; `preset="infer"` classifies parameters by comparing shapes with `base_model` (another width) and
    reads their roles off the module graph of one forward pass on `example_input` (default: a token batch)."""
    roles = dict(roles or ROLES)
    params, user = _checked_inputs(model, patterns, roles)
    sources = _role_sources(model, preset, params, user, base_model, example_input)
    bound: list[BoundParam] = []
    unbound: list[str] = []
    doubly: list[str] = []
    for name, tensor, aliases in params:
        hits, clashes, readout = _hits(name, aliases, sources)
        doubly += clashes
        if hits:
            bound.append(_bound_param(name, tensor, aliases, hits, readout, roles, sources.inferred))
        elif not clashes:
            unbound.append(name)
    _refuse_unbound(doubly, unbound, sources.preset)
    return bound


@dataclass
class _RoleSources:
    """Where a parameter name's role comes from, in precedence order: the user's patterns, the roles inferred from
    the module graph, the preset's patterns; and each module parameter's weight layout."""

    user: list[Rule]
    inferred: dict[str, Any]
    preset: Preset | None
    layouts: dict[str, str]
    preset_rules: list[Rule]
    preset_source: str


def _checked_inputs(
    model: Any, patterns: Mapping[str, str] | None, roles: Mapping[str, str]
) -> tuple[list[tuple[str, Any, tuple[str, ...]]], list[Rule]]:
    """The model's distinct parameters and the user's pattern rules; refused: not a module, no parameters, a
    pattern naming an unknown role."""
    if not hasattr(model, "named_parameters"):
        raise BindingError(f"error: expected a torch nn.Module to bind, got {type(model).__name__}")
    params = list(unique_parameters(model))
    if not params:
        raise BindingError(f"error: model {type(model).__name__} has no parameters to plan")
    user = [Rule(p, r) for p, r in (patterns or {}).items()]
    for rule in user:
        if rule.role not in roles:
            raise BindingError(
                f"error: pattern '{rule.pattern}' names unknown role '{rule.role}'; roles: {', '.join(roles)}"
            )
    return params, user


def _role_sources(
    model: Any, preset: str | None, params: list, user: list[Rule], base_model: Any, example_input: Any
) -> _RoleSources:
    """The preset (or the inferred roles) that back the user's patterns; refused when nothing could bind."""
    chosen = resolve_preset(model, preset, [n for n, _, _ in params])
    inferred: dict[str, Any] = {}
    if preset == "infer":
        if base_model is None:
            raise BindingError("error: preset='infer' needs base_model=<the same model built at another width>")
        inferred = infer_roles(model, base_model, example_input)
    elif chosen is None and not user:
        raise BindingError(
            f"error: no preset recognises model class {type(unwrap(model)).__name__}; pass "
            f"preset= one of {', '.join(PRESETS)}, patterns={{'<glob>': '<role>'}}, or "
            "preset='infer' with base_model=<the model at another width>"
        )
    rules = list(chosen.rules) if chosen is not None else []
    source = f"preset:{chosen.name}" if chosen is not None else "inferred"
    return _RoleSources(user, inferred, chosen, module_layouts(model), rules, source)


def _hits(
    name: str, aliases: tuple[str, ...], sources: _RoleSources
) -> tuple[list[tuple[str, str, str, Rule]], list[str], bool]:
    """(role, layout, source, rule) for each of the tensor's names that binds; the names that matched two roles
    (with the roles); whether an unbound tied name is owned by a Linear (the shared tensor is a readout)."""
    hits: list[tuple[str, str, str, Rule]] = []
    clashes: list[str] = []
    readout = False
    for alias in (name, *aliases):
        matched = _matching_roles(alias, sources.user)
        source = "patterns"
        if not matched and alias in sources.inferred:
            c = sources.inferred[alias]
            matched, source = [Rule(alias, c.role, c.layout, c.fused)], c.source
        elif not matched:
            matched, source = _matching_roles(alias, sources.preset_rules), sources.preset_source
        if len({r.role for r in matched}) > 1:
            clashes.append(f"{alias} ({' vs '.join(sorted({r.role for r in matched}))})")
            continue
        if matched:
            layout = sources.layouts.get(alias) or (matched[0].layout if source != "patterns" else "out_in")
            hits.append((matched[0].role, layout, source, matched[0]))
        elif alias != name and sources.layouts.get(alias) == "out_in":
            readout = True
    return hits, clashes, readout


def _bound_param(
    name: str,
    tensor: Any,
    aliases: tuple[str, ...],
    hits: list[tuple[str, str, str, Rule]],
    readout: bool,
    roles: Mapping[str, str],
    inferred: dict[str, Any],
) -> BoundParam:
    """The tensor bound to its embed hit if any (MuSharedReadout), else its first; its other names' roles (and
    `unembed` for a tied readout) recorded as tied roles."""
    chosen_hit = next((h for h in hits if h[0] == "embed"), hits[0])
    role, layout, source, rule = chosen_hit
    tied_roles = tuple(h[0] for h in hits if h is not chosen_hit) + (("unembed",) if readout else ())
    if role not in roles:
        raise BindingError(
            f"error: parameter '{name}' binds to role '{role}', which the rules do not "
            f"define; roles: {', '.join(roles)}"
        )
    shape = tuple(int(d) for d in tensor.shape)
    fan_in, fan_out = fans(shape, layout)
    ambiguity = inferred[name].ambiguity if source == "inferred" and name in inferred else ""
    return BoundParam(
        name, shape, role, roles[role], fan_in, fan_out, source, aliases, tied_roles, rule.fused, ambiguity
    )


def _refuse_unbound(doubly: list[str], unbound: list[str], preset: Preset | None) -> None:
    """One line for the names that matched two roles, else for those that matched none."""
    if doubly:
        raise BindingError(
            f"error: {len(doubly)} model parameter(s) match patterns of two roles: "
            f"{listing_text(doubly)}; make the patterns disjoint (patterns= take precedence over "
            "the preset)"
        )
    if unbound:
        where = f"preset '{preset.name}'" if preset is not None else "the patterns"
        raise BindingError(
            f"error: {len(unbound)} model parameter(s) match no role in {where}: "
            f"{listing_text(unbound)}; pass patterns={{'{_glob_hint(unbound[0])}': '<role>', ...}} "
            "or preset='infer' with base_model=<the model at another width>"
        )


def _glob_hint(name: str) -> str:
    """A glob that generalises block indices of `name` (blocks.3.x -> blocks.*.x)."""
    return ".".join("*" if seg.isdigit() else seg for seg in name.split("."))
