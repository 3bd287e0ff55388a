"""Bind every parameter of a model to a role by normalised name and glob patterns (never tensor attributes).

Names are normalised by dropping wrapper segments (`module.` of DDP, `_orig_mod.` of torch.compile,
`_fsdp_wrapped_module.` / `_checkpoint_wrapped_module.` of FSDP1 and activation checkpointing), so a plan made
on the bare model applies to the wrapped one. Tied weights (one tensor under several names) are planned once,
under the name `named_parameters()` yields first. Rule (the `mup` package's MuSharedReadout semantics): when any
of its names binds to `embed`, it takes the `embed` role (init and lr of the embedding); the readout's
multiplier stays a forward site of the plan (`tied_roles` records what the other names bind to).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

from scalec.compiler.vocabulary import ROLES
from scalec.errors import ScalecError
from scalec.runtime.plan.presets import PRESETS, Preset, Rule, detect_preset

WRAPPER_PREFIXES = ("module.", "_orig_mod.", "_fsdp_wrapped_module.", "_checkpoint_wrapped_module.")
_SHOW = 5  # how many offending names an error message lists


class BindingError(ScalecError):
    """A model parameter matches no role, or two; or the binding request itself is malformed."""


@dataclass(frozen=True)
class BoundParam:
    """One unique parameter tensor: its normalised name, shape, role, fans and any tied aliases."""

    name: str
    shape: tuple[int, ...]
    role: str
    width_class: str
    fan_in: int
    fan_out: int
    source: str  # "preset:<name>", "patterns", "graph" (module graph) or "inferred" (width class only)
    tied_with: tuple[str, ...] = field(default=())
    tied_roles: tuple[str, ...] = field(default=())  # the roles the tied names bind to ("unembed": a tied readout)
    fused: bool = False  # one tensor holds q, k and v (a fused qkv projection)
    ambiguity: str = ""  # for "inferred": why the module graph did not decide the role


def normalise_name(name: str) -> str:
    """Drop wrapper segments anywhere in a dotted parameter name (segment-wise `removeprefix`)."""
    rest, kept = name + ".", []
    while rest:
        stripped = True
        while stripped:
            stripped = False
            for prefix in WRAPPER_PREFIXES:
                if rest.startswith(prefix):
                    rest, stripped = rest.removeprefix(prefix), True
        segment, _, rest = rest.partition(".")
        if segment:
            kept.append(segment)
    return ".".join(kept)


def unwrap(model: Any) -> Any:
    """The user's model inside torch.compile / DDP wrappers (for class-name based preset detection)."""
    seen = set()
    while id(model) not in seen:
        seen.add(id(model))
        for attr in ("_orig_mod", "module", "_fsdp_wrapped_module"):
            inner = getattr(model, attr, None)
            if inner is not None and hasattr(inner, "named_parameters"):
                model = inner
                break
    return model


def unique_parameters(model: Any) -> Iterator[tuple[str, Any, tuple[str, ...]]]:
    """Yield (normalised name, tensor, tied alias names) once per distinct tensor, in model order."""
    order: list[int] = []
    names: dict[int, list[str]] = {}
    tensors: dict[int, Any] = {}
    owner: dict[str, int] = {}
    for raw, p in model.named_parameters(remove_duplicate=False):
        name = normalise_name(raw)
        if name in owner and owner[name] != id(p):
            raise BindingError(
                f"error: two parameters normalise to the same name '{name}' (from '{raw}'); "
                "rename the submodule called like a wrapper (module/_orig_mod)"
            )
        owner[name] = id(p)
        if id(p) not in names:
            order.append(id(p))
            names[id(p)], tensors[id(p)] = [], p
        if name not in names[id(p)]:
            names[id(p)].append(name)
    for key in order:
        yield names[key][0], tensors[key], tuple(names[key][1:])


def module_layouts(model: Any) -> dict[str, str]:
    """Per normalised parameter name, the layout its module's class fixes: (in, out) for lookup tables and
    HF Conv1D, (out, in) for Linear and convolutions. Custom modules are absent (their preset says)."""
    from torch import nn

    layouts = {}
    for mod_name, module in model.named_modules(remove_duplicate=False):
        if isinstance(module, (nn.Embedding, nn.EmbeddingBag)) or type(module).__name__ == "Conv1D":
            layout = "in_out"
        elif isinstance(module, (nn.Linear, nn.modules.conv._ConvNd)):
            layout = "out_in"
        else:
            continue
        for p_name, _ in module.named_parameters(recurse=False):
            layouts.setdefault(normalise_name(f"{mod_name}.{p_name}" if mod_name else p_name), layout)
    return layouts


def fans(shape: tuple[int, ...], layout: str) -> tuple[int, int]:
    """(fan_in, fan_out) of a tensor stored in `layout`; vectors have fan_in 1 and fan_out = their length."""
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return 1, int(shape[0])
    rest = 1
    for d in shape[2:]:
        rest *= int(d)
    if layout == "in_out":
        return int(shape[0]) * rest, int(shape[1])
    return int(shape[1]) * rest, int(shape[0])


def _matching_roles(name: str, rules: list[Rule]) -> list[Rule]:
    return [r for r in rules if fnmatchcase(name, r.pattern)]


def listing_text(items: list[str]) -> str:
    """Quote the first few names of a list for an error message, saying how many more there are."""
    shown = ", ".join(f"'{s}'" for s in items[:_SHOW])
    return shown + (f" (and {len(items) - _SHOW} more)" if len(items) > _SHOW else "")


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
    chosen = resolve_preset(model, preset, [n for n, _, _ in params])
    inferred: dict[str, Any] = {}
    if preset == "infer":
        if base_model is None:
            raise BindingError("error: preset='infer' needs base_model=<the same model built at another width>")
        from scalec.runtime.plan.shape_inference import infer_roles

        inferred = infer_roles(model, base_model, example_input)
    elif chosen is None and not user:
        raise BindingError(
            f"error: no preset recognises model class {type(unwrap(model)).__name__}; pass "
            f"preset= one of {', '.join(PRESETS)}, patterns={{'<glob>': '<role>'}}, or "
            "preset='infer' with base_model=<the model at another width>"
        )
    preset_rules = list(chosen.rules) if chosen is not None else []
    layouts = module_layouts(model)
    source_of_preset = f"preset:{chosen.name}" if chosen is not None else "inferred"

    unbound: list[str] = []
    doubly: list[str] = []
    bound: list[BoundParam] = []
    for name, tensor, aliases in params:
        hits: list[tuple[str, str, str, Rule]] = []  # (role, layout, source, rule) per name that binds
        clash = readout = False
        for alias in (name, *aliases):
            matched = _matching_roles(alias, user)
            source = "patterns"
            if not matched and alias in inferred:
                c = inferred[alias]
                matched, source = [Rule(alias, c.role, c.layout, c.fused)], c.source
            elif not matched:
                matched, source = _matching_roles(alias, preset_rules), source_of_preset
            if len({r.role for r in matched}) > 1:
                doubly.append(f"{alias} ({' vs '.join(sorted({r.role for r in matched}))})")
                clash = True
                continue
            if matched:
                layout = layouts.get(alias) or (matched[0].layout if source != "patterns" else "out_in")
                hits.append((matched[0].role, layout, source, matched[0]))
            elif alias != name and layouts.get(alias) == "out_in":
                readout = True  # an unbound tied name owned by a Linear: the shared tensor is also a readout
        if not hits:
            if not clash:
                unbound.append(name)
            continue
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
        bound.append(
            BoundParam(
                name, shape, role, roles[role], fan_in, fan_out, source, aliases, tied_roles, rule.fused, ambiguity
            )
        )
    if doubly:
        raise BindingError(
            f"error: {len(doubly)} model parameter(s) match patterns of two roles: "
            f"{listing_text(doubly)}; make the patterns disjoint (patterns= take precedence over "
            "the preset)"
        )
    if unbound:
        where = f"preset '{chosen.name}'" if chosen is not None else "the patterns"
        raise BindingError(
            f"error: {len(unbound)} model parameter(s) match no role in {where}: "
            f"{listing_text(unbound)}; pass patterns={{'{_glob_hint(unbound[0])}': '<role>', ...}} "
            "or preset='infer' with base_model=<the model at another width>"
        )
    return bound


def _glob_hint(name: str) -> str:
    """A glob that generalises block indices of `name` (blocks.3.x -> blocks.*.x)."""
    return ".".join("*" if seg.isdigit() else seg for seg in name.split("."))
