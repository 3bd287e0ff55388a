"""A model's parameters as binding sees them: names without wrapper segments (DDP's `module.`, torch.compile's
`_orig_mod.`, FSDP1's and activation checkpointing's), tied tensors once, module layouts and fans, and the bound
parameter record (runtime/plan/binding.py binds them to roles; shape_inference.py infers roles from them)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from scalec.errors import ScalecError

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


def listing_text(items: list[str]) -> str:
    """Quote the first few names of a list for an error message, saying how many more there are."""
    shown = ", ".join(f"'{s}'" for s in items[:_SHOW])
    return shown + (f" (and {len(items) - _SHOW} more)" if len(items) > _SHOW else "")
