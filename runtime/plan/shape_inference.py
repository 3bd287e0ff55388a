"""Fallback binding: compare the model with a copy at another width and classify each parameter by which of
its dims changed (as `mup`'s base shapes do); then read each parameter's role off the module graph
(`graph.py`: attention vs MLP matrices, the matrix that ends each residual branch, norms, the final norm). Where
the graph decides nothing (a forward pass fails, a branch is ambiguous) a parameter keeps its width class's
representative role below, marked `source="inferred"` with the reason, and make_plan refuses to fold a depth
rule into such a model.

| dims that change | width class | role |
|---|---|---|
| fan-in and fan-out | hidden | mlp.up |
| fan-out only | input | embed |
| fan-in only | output | unembed |
| none, or a vector | vector | norm (`bias` for names ending in `.bias`) |

Which dim is fan-in follows the owning module (nn.Embedding and HF Conv1D store (in, out); everything else
(out, in)). A custom lookup table stored (V, n) in a plain module reads as `output` by shape; the module graph
sees it read at integer indices and makes it `embed` (or bind it with `patterns={"<name>": "embed"}`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from scalec.compiler.vocabulary import ROLES
from scalec.runtime.plan.graph import GraphRoles, analyse, record
from scalec.runtime.plan.model_params import (
    BindingError,
    listing_text,
    module_layouts,
    normalise_name,
    unique_parameters,
)

CLASS_ROLE = {"input": "embed", "hidden": "mlp.up", "output": "unembed", "vector": "norm"}


@dataclass(frozen=True)
class Inferred:
    """The inference for one parameter: which dims changed, the width class and the representative role."""

    changed: str  # "none" | "in" | "out" | "both"
    width_class: str
    role: str
    layout: str
    source: str = "inferred"  # "graph" when the module graph decided the role
    fused: bool = False
    ambiguity: str = ""


def classify(name: str, shape: tuple[int, ...], base_shape: tuple[int, ...], layout: str) -> Inferred:
    """Classify one parameter from its shape at two widths."""
    if len(shape) <= 1:
        changed = "out" if tuple(shape) != tuple(base_shape) else "none"
        width_class = "vector"
    else:
        out_dim, in_dims = (1, (0, *range(2, len(shape)))) if layout == "in_out" else (0, range(1, len(shape)))
        out_changed = shape[out_dim] != base_shape[out_dim]
        in_changed = any(shape[d] != base_shape[d] for d in in_dims)
        changed = {(True, True): "both", (True, False): "out", (False, True): "in"}.get(
            (out_changed, in_changed), "none"
        )
        width_class = {"both": "hidden", "out": "input", "in": "output", "none": "vector"}[changed]
    role = "bias" if width_class == "vector" and name.endswith(".bias") else CLASS_ROLE[width_class]
    return Inferred(changed, width_class, role, layout)


def infer_roles(model: Any, base_model: Any, example_input: Any = None) -> dict[str, Inferred]:
    """Per normalised parameter name of `model`, the inferred class and role (base_model: another width;
    example_input: what `model(...)` takes, default a [1, 4] batch of token ids when the model embeds tokens)."""
    shapes = {n: tuple(p.shape) for n, p, _ in unique_parameters(model)}
    base = {n: tuple(p.shape) for n, p, _ in unique_parameters(base_model)}
    missing, extra = [n for n in shapes if n not in base], [n for n in base if n not in shapes]
    if missing or extra:
        which = missing or extra
        side = "base_model lacks" if missing else "model lacks"
        raise BindingError(
            f"error: shape inference needs the same parameters in both models; {side} "
            f"{listing_text(which)}; build base_model from the same class at another width"
        )
    ranks = [n for n in shapes if len(shapes[n]) != len(base[n])]
    if ranks:
        raise BindingError(
            f"error: parameter '{ranks[0]}' has rank {len(shapes[ranks[0]])} in the model but "
            f"{len(base[ranks[0]])} in base_model; build both from the same class"
        )
    if all(shapes[n] == base[n] for n in shapes):
        raise BindingError(
            "error: model and base_model have identical shapes, so no dim reads as width; "
            "build base_model at another width"
        )
    layouts = module_layouts(model)
    classes = {n: classify(n, shapes[n], base[n], layouts.get(n, "out_in")) for n in shapes}
    graph = _graph_roles(model, {n: c.width_class for n, c in classes.items()}, shapes, example_input)
    out = {}
    for n, c in classes.items():
        role = graph.roles.get(n)
        if role == "embed" and c.width_class in ("input", "output"):  # a lookup, whichever way it is stored
            out[n] = replace(c, role=role, width_class="input", layout="in_out", source="graph")
        elif role is not None and graph.ambiguous is None and ROLES.get(role) in (c.width_class, None):
            out[n] = replace(c, role=role, source="graph", fused=n in graph.fused)
        else:
            out[n] = replace(c, ambiguity=graph.ambiguous or "")
    return out


def _graph_roles(model: Any, width_class: dict[str, str], shapes: dict, example_input: Any) -> GraphRoles:
    """Roles from one recorded forward pass, or GraphRoles(ambiguous=<why>) when it cannot run."""
    import torch

    if example_input is None:  # token ids 0 are valid for any vocabulary; other inputs fail and say so
        device = next(p.device for _, p, _ in unique_parameters(model))
        example_input = torch.zeros((1, 4), dtype=torch.long, device=device)
    names = {id(p): n for n, p, _ in unique_parameters(model)}
    for raw, p in model.named_parameters(remove_duplicate=False):
        names.setdefault(id(p), normalise_name(raw))
    try:
        ops = record(model, example_input, names)
    except Exception as exc:  # noqa: BLE001 - any failure of a foreign forward pass means: undecided
        return GraphRoles(
            ambiguous=f"the forward pass for the module graph failed ({type(exc).__name__}; pass example_input=)"
        )
    seeds = frozenset({id(example_input)} if torch.is_floating_point(example_input) else set())
    return analyse(ops, shapes, width_class, seeds)
