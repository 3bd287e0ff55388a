"""What the model itself says where names do not: the head dimension a shape leaves out (config, `head_dim`
attribute, else the traced attention calls, when the plan depends on it) and a readout tied to the embedding
(a shared tensor, or the embedding's tensor read by the op producing the logits in `forward`)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from scalec.compiler.vocabulary import SITE_ROLES, site_identity
from scalec.runtime.plan.inputs import resolve_shape, role_values, shape_axes
from scalec.runtime.plan.model_params import BoundParam, unwrap
from scalec.runtime.plan.model_shape import declared_head_dim
from scalec.runtime.plan.model_trace import ModelTrace, trace_model
from scalec.runtime.plan.plan_error import PlanError


def head_dim_need(module: Any, shape: Any, hp: Any, bound: list[BoundParam]) -> str | None:
    """Why the plan of these tensors depends on d_head: "values" (a role value does), "attention" (the attention
    scale, relative to the 1/sqrt(d_head) a model applies, does and attention matrices are bound), "maybe" (it
    does and the roles were inferred from width alone); None when it does not."""
    other = dataclasses.replace(shape, d_head=2 * shape.d_head)
    layered = getattr(module, "LAYERED_ROLES", frozenset())
    for b in bound:
        key = (b.role, b.fan_in, b.fan_out, 0 if b.role in layered else None)
        if role_values(module, key, shape, hp) != role_values(module, key, other, hp):
            return "values"
    scale = [
        module.sites(x).as_dict().get("attn.scale", 1.0) / site_identity("attn.scale", x.d_head) for x in (shape, other)
    ]
    if math.isclose(*scale, rel_tol=1e-12):
        return None
    if any(b.role in SITE_ROLES["attn.scale"] for b in bound):
        return "attention"
    return "maybe" if any(b.source == "inferred" for b in bound) else None


class LazyTrace:
    """One traced forward pass, run at most once and only when asked for."""

    def __init__(self, model: Any, example_input: Any) -> None:
        self.model, self.example_input, self._trace = model, example_input, None

    def get(self) -> ModelTrace:
        if self._trace is None:
            self._trace = trace_model(self.model, self.example_input)
        return self._trace


def given_shape(module: Any, model: Any, shape: Any) -> tuple[Any, bool]:
    """The checked shape, a d_head the caller leaves out read from the model's config or `head_dim` attribute;
    and whether d_head is still open (neither the caller nor the model gave it)."""
    axes = shape_axes(module, shape)
    declared = declared_head_dim(model)
    if "d_head" not in axes and declared is not None:
        axes["d_head"] = declared[0]
    return resolve_shape(module, axes), "d_head" not in axes


def traced_head_dim(module: Any, model: Any, shape: Any, hp: Any, bound: list[BoundParam], trace: LazyTrace) -> Any:
    """The shape at the head dimension of the traced attention calls when the plan depends on d_head and nothing
    else gave it; refused when the rule needs one and the model shows none."""
    need = head_dim_need(module, shape, hp, bound)
    if need is None:
        return shape
    seen = trace.get()
    if len(seen.head_dims) == 1:
        return resolve_shape(module, {**dataclasses.asdict(shape), "d_head": float(next(iter(seen.head_dims)))})
    if need == "maybe" and (not seen.failed or seen.no_attention) and not seen.head_dims:
        return shape  # traced (or fx-traced without inputs): no attention anywhere, the scale reaches no tensor
    why = seen.failed or (
        f"its attention calls use head dimensions {sorted(seen.head_dims)}"
        if seen.head_dims
        else "no scaled_dot_product_attention call was traced"
    )
    raise PlanError(
        f"error: {module.NAME} depends on the head dimension and {type(unwrap(model)).__name__} declares none "
        f"(config.head_dim or a head_dim attribute; {why}); pass d_head in the shape (--head-dim on the command "
        "line), or example_input= so the attention calls can be traced"
    )


def readout_tie(bound: list[BoundParam], trace: LazyTrace) -> tuple[list[BoundParam], str | None, str | None]:
    """The embedding tensors that are also the readout, how (one line), and why the readout is unknown (None when
    known): a tensor shared under two names, or the embedding's tensor read by the op producing the logits."""
    shared = [b for b in bound if b.role == "embed" and "unembed" in b.tied_roles]
    if shared:
        t = shared[0]
        return shared, f"the readout shares its tensor with the embedding ('{t.tied_with[0]}' = '{t.name}')", None
    if any(b.role == "unembed" for b in bound) or not any(b.role == "embed" for b in bound):
        return [], None, None
    seen = trace.get()
    if seen.failed:
        return [], None, seen.failed
    names = {n: b for b in bound for n in (b.name, *b.tied_with)}
    b = names.get(seen.readout) if seen.readout is not None else None
    if b is not None and b.role == "embed":
        return [b], f"the logits are read from the embedding's tensor '{b.name}' in forward (a tied readout)", None
    return [], None, None
