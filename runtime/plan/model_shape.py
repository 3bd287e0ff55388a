"""What a model reveals about its own shape (width, depth, head dimension, MLP and key/value sizes), read from
its config (HF `config`, the bundled GPT's `config`) or else from the bound tensors, so that make_plan can
refuse a shape that does not describe the model."""

from __future__ import annotations

import math
from typing import Any

from scalec.runtime.plan.model_params import BoundParam, unwrap

HIDDEN_ROLES = ("attn.q", "attn.k", "attn.v", "attn.o", "mlp.up", "mlp.gate", "mlp.down")
_CONFIG_KEYS = {
    "n": ("hidden_size", "n_embd", "d_model", "dim", "width", "n_embed"),
    "L": ("num_hidden_layers", "n_layer", "num_layers", "n_layers", "depth"),
    "heads": ("num_attention_heads", "n_head", "n_heads"),
    "kv_heads": ("num_key_value_heads", "n_kv_heads", "n_query_groups"),
    "d_head": ("head_dim", "head_size"),
    "intermediate": ("intermediate_size", "n_inner", "ffn_dim", "intermediate_size"),
}


def _config_value(config: Any, keys: tuple[str, ...]) -> float | None:
    for key in keys:
        value = getattr(config, key, None)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
            return float(value)
    return None


def declared_head_dim(model: Any) -> tuple[float, str] | None:
    """The head dimension a model declares, and where: its config (head_dim, or width / heads), else a `head_dim`
    attribute of the model. The one reader for make_plan, coordinate checks and the CLI (a traced attention call
    is the planner's last resort, model_trace.py)."""
    return reveal(model, []).get("d_head")


def reveal(model: Any, bound: list[BoundParam]) -> dict[str, tuple[float, str]]:
    """Per axis (n, L, d_head; plus intermediate and kv_heads where known), the model's value and where from."""
    out: dict[str, tuple[float, str]] = {}
    config = getattr(unwrap(model), "config", None)
    cfg_name = f"{type(unwrap(model)).__name__}.config"
    if config is not None:
        for axis, keys in _CONFIG_KEYS.items():
            value = _config_value(config, keys)
            if value is not None:
                out[axis] = (value, f"{cfg_name}.{next(k for k in keys if _config_value(config, (k,)))}")
        if "d_head" not in out and "n" in out and "heads" in out and out["n"][0] % out["heads"][0] == 0:
            out["d_head"] = (out["n"][0] / out["heads"][0], f"{cfg_name} (width / heads)")
    attribute = getattr(unwrap(model), "head_dim", None)
    if "d_head" not in out and isinstance(attribute, int) and not isinstance(attribute, bool) and attribute > 0:
        out["d_head"] = (float(attribute), f"{type(unwrap(model)).__name__}.head_dim")
    if "n" not in out:
        embed = next((b for b in bound if b.role == "embed" and len(b.shape) == 2), None)
        if embed is not None:
            out["n"] = (float(embed.fan_out), f"the embedding '{embed.name}'")
    if "L" not in out:
        blocks = {_block_index(b.name) for b in bound if b.role in HIDDEN_ROLES} - {None}
        if blocks:
            out["L"] = (float(len(blocks)), f"{len(blocks)} numbered blocks of hidden matrices")
    return out


def _block_index(name: str) -> str | None:
    """The dotted prefix up to the first numeric segment ('blocks.3'), or None."""
    parts = name.split(".")
    for i, seg in enumerate(parts):
        if seg.isdigit():
            return ".".join(parts[: i + 1])
    return None


def mismatch(model: Any, bound: list[BoundParam], shape: Any) -> str | None:
    """One line naming the first axis where `shape` and the model disagree, or None."""
    for axis, (value, where) in reveal(model, bound).items():
        if axis not in ("n", "L", "d_head"):
            continue
        planned = float(getattr(shape, axis))
        if not math.isclose(planned, value, rel_tol=1e-9):
            return (
                f"the shape says {axis}={planned:g} but the model has {axis}={value:g} (from {where}); "
                f"plan at {axis}={value:g} or build the model at {axis}={planned:g}"
            )
    return None
