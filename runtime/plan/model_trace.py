"""What one traced forward pass says that names cannot: which parameter the logits are read from (a readout tied
in `forward`, `x @ self.tokens.weight.t()`) and the head dimension of the attention calls (the query's last dim
in `scaled_dot_product_attention`).  make_plan traces only when the binding and the config leave these open."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from scalec.runtime.plan.graph import attention_head_dims, readout_of, record
from scalec.runtime.plan.model_params import normalise_name, unique_parameters


@dataclass(frozen=True)
class ModelTrace:
    """The readout parameter (normalised name; None: the output comes from no parameter), the head dimensions of
    the attention calls, or why the forward pass could not run (`failed`)."""

    readout: str | None = None
    head_dims: frozenset[int] = field(default_factory=frozenset)
    failed: str | None = None
    no_attention: bool = False  # the forward could not run, but a static (fx) trace proves it calls no attention


def _statically_without_attention(model: Any) -> bool:
    """True when torch.fx traces the model without inputs and its graph calls no scaled_dot_product_attention and
    holds no nn.MultiheadAttention (as much as a run of the forward would show); False when it cannot tell."""
    import torch
    import torch.nn.functional as F

    try:
        graph = torch.fx.symbolic_trace(model).graph
    except Exception:  # noqa: BLE001 - data-dependent forwards cannot be traced statically: unknown
        return False
    sdpa = {F.scaled_dot_product_attention, getattr(torch._C._nn, "scaled_dot_product_attention", None)}
    for node in graph.nodes:
        if node.op == "call_function" and node.target in sdpa:
            return False
        if node.op == "call_module" and isinstance(model.get_submodule(node.target), torch.nn.MultiheadAttention):
            return False
    return True


def default_example(model: Any) -> Any:
    """A [1, 4] batch of token ids 0 on the model's device: valid for any vocabulary."""
    import torch

    device = next(p.device for _, p, _ in unique_parameters(model))
    return torch.zeros((1, 4), dtype=torch.long, device=device)


def _output_tensor(out: Any) -> Any:
    """The logits among what a model returns (a tensor, an object with `.logits`, a tuple or dict)."""
    import torch

    if hasattr(out, "logits"):
        out = out.logits
    if isinstance(out, dict):
        out = out.get("logits", next(iter(out.values()), None))
    if isinstance(out, (tuple, list)):
        out = next((o for o in out if isinstance(o, torch.Tensor)), None)
    return out if isinstance(out, torch.Tensor) else None


def trace_model(model: Any, example_input: Any = None) -> ModelTrace:
    """Run the model once on `example_input` (default: token ids) and read the readout and head dimensions."""
    names = {id(p): n for n, p, _ in unique_parameters(model)}
    for raw, p in model.named_parameters(remove_duplicate=False):
        names.setdefault(id(p), normalise_name(raw))
    outputs: list[Any] = []
    was_training = model.training
    model.eval()  # planning changes nothing: no dropout draws from the RNG, no norm statistics move
    try:
        ops = record(model, default_example(model) if example_input is None else example_input, names, outputs)
    except Exception as exc:  # noqa: BLE001 - any failure of a foreign forward pass means: unknown
        why = f"the forward pass failed ({type(exc).__name__}; pass example_input=)"
        return ModelTrace(failed=why, no_attention=_statically_without_attention(model))
    finally:
        model.train(was_training)
    logits = _output_tensor(outputs[0])
    readout = readout_of(ops, id(logits)) if logits is not None else None
    return ModelTrace(readout=readout, head_dims=frozenset(attention_head_dims(ops)))
