"""Roles from the module graph: one forward pass under a TorchFunctionMode records which tensors every torch op
reads and writes; the residual stream, its branches and each matrix's place in them are read off that graph.

- The stream starts at the outputs of embedding lookups (a parameter read at integer indices: `embed`, whatever
  its layout) and input-class matrices, and runs through additions and
  stream-preserving ops (dropout, views, casts, scalar multiplies). An addition of a non-stream tensor to the
  stream ends a residual branch; the matrix that produced that tensor (through preserving ops only) ends it.
- A branch that computes attention (scaled_dot_product_attention, or two activation-activation matmuls around a
  softmax) is an attention branch: the matrices feeding the query / key / value operands are attn.q / attn.k /
  attn.v (one feeding several is a fused qkv, bound as attn.q), its end is attn.o; vectors on the q/k path
  after a projection are qk_norm. Any other branch is an MLP: its end is mlp.down; a matrix whose output reaches
  the gating product through a nonlinearity is mlp.gate, the other mlp.up.
- Vectors outside every branch are the final norm (`final_norm`); biases of block matrices are `bias`.
Anything the graph does not decide is reported as ambiguous, never guessed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ADDS = {"add", "__add__", "__radd__", "add_", "__iadd__"}
PRESERVING = {
    "dropout",
    "alpha_dropout",
    "feature_alpha_dropout",
    "to",
    "type",
    "float",
    "half",
    "bfloat16",
    "type_as",
    "contiguous",
    "view",
    "reshape",
    "clone",
    "__getitem__",
}
SCALING = {"mul", "__mul__", "__rmul__", "mul_", "__imul__", "div", "__truediv__", "div_", "__itruediv__"}
BILINEAR = {"matmul", "__matmul__", "__rmatmul__", "bmm", "einsum", "baddbmm"}
ACTIVATIONS = {"silu", "gelu", "relu", "sigmoid", "tanh", "relu_", "silu_", "mish", "softplus", "elu", "leaky_relu"}


@dataclass
class GraphRoles:
    """Roles the graph decided (by normalised parameter name), fused qkv names, and why anything is undecided."""

    roles: dict[str, str] = field(default_factory=dict)
    fused: set[str] = field(default_factory=set)
    ambiguous: str | None = None


@dataclass
class _Op:
    name: str
    inputs: list[tuple[int, int]]  # (position, tensor id) of non-parameter tensor operands
    params: list[tuple[int, str]]  # (position, parameter name)
    outputs: list[int]
    scalar_other: bool = False  # a multiply/divide whose other operand is a Python number or a 1-element tensor
    lookup: bool = False  # reads a parameter at integer indices (an embedding lookup)
    shapes: tuple[tuple[int, ...], ...] = ()  # shapes of the tensor operands, in order


def _flatten(obj: Any, out: list[Any]) -> None:
    if isinstance(obj, (list, tuple)):
        for o in obj:
            _flatten(o, out)
    elif isinstance(obj, dict):
        for o in obj.values():
            _flatten(o, out)
    else:
        out.append(obj)


def record(model: Any, example_input: Any, param_names: dict[int, str], outputs: list[Any] | None = None) -> list[_Op]:
    """Run `model(example_input)` once (no grad) and return the torch ops it called, in order (the model's
    output is appended to `outputs` when given)."""
    import torch
    from torch.overrides import TorchFunctionMode

    ops: list[_Op] = []
    keep: list[Any] = []  # tensors stay alive, so no id is reused during the pass

    class Recorder(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            out = func(*args, **kwargs)
            flat: list[Any] = []
            _flatten(list(args) + list(kwargs.values()), flat)
            tensors = [(i, t) for i, t in enumerate(flat) if isinstance(t, torch.Tensor)]
            if not tensors:
                return out
            outs: list[Any] = []
            _flatten(out, outs)
            outs = [t for t in outs if isinstance(t, torch.Tensor)]
            keep.extend(t for _, t in tensors)
            keep.extend(outs)
            name = getattr(func, "__name__", str(func))
            big = [t for _, t in tensors if t.numel() > 1]
            ints = any(not t.is_floating_point() and not t.is_complex() for _, t in tensors if id(t) not in param_names)
            ops.append(
                _Op(
                    name=name,
                    inputs=[(i, id(t)) for i, t in tensors if id(t) not in param_names],
                    params=[(i, param_names[id(t)]) for i, t in tensors if id(t) in param_names],
                    outputs=[id(t) for t in outs],
                    scalar_other=len(big) <= 1,
                    lookup=ints and any(id(t) in param_names and t.dim() == 2 for _, t in tensors),
                    shapes=tuple(tuple(int(d) for d in t.shape) for _, t in tensors),
                )
            )
            return out

    with torch.no_grad(), Recorder():
        out = model(example_input)
    if outputs is not None:
        outputs.append(out)
    return ops


def analyse(
    ops: list[_Op], shapes: dict[str, tuple[int, ...]], width_class: dict[str, str], seeds: frozenset[int] = frozenset()
) -> GraphRoles:
    """Residual branches and roles from the recorded ops (see the module docstring); `seeds`: ids of tensors
    that start the residual stream besides the embeddings' outputs (a model input of activations)."""
    result = GraphRoles()
    producer: dict[int, int] = {}
    for k, op in enumerate(ops):
        for t in op.outputs:
            producer.setdefault(t, k)
    inputs_class = {n for n, c in width_class.items() if c == "input"}
    stream: set[int] = set(seeds)
    events: list[tuple[int, int]] = []  # (add op index, branch tensor id)
    for k, op in enumerate(ops):
        ins = [t for _, t in op.inputs]
        if op.lookup or (any(p in inputs_class for _, p in op.params) and op.name in ("linear", "addmm", "matmul")):
            stream.update(op.outputs)
            if op.lookup:
                result.roles.update((p, "embed") for _, p in op.params if len(shapes[p]) == 2)
        elif op.name in ADDS and any(t in stream for t in ins):
            for t in ins:
                if t not in stream:
                    events.append((k, t))
            stream.update(op.outputs)
        elif ins and ins[0] in stream and not op.params:
            if op.name in PRESERVING or (op.name in SCALING and op.scalar_other):
                stream.update(op.outputs)

    def walk_back(t: int) -> int | None:
        """The op that produced `t` through preserving ops and scalar multiplies."""
        while t in producer:
            op = ops[producer[t]]
            if op.params and any(len(shapes[p]) >= 2 for _, p in op.params):
                return producer[t]
            passes = op.name in PRESERVING or (op.name in SCALING and op.scalar_other)
            if not passes or not op.inputs:
                return None
            t = op.inputs[0][1]
        return None

    anc_cache: dict[int, frozenset[int]] = {}

    def ancestors(t: int) -> frozenset[int]:
        """Op indices upstream of tensor `t`, not crossing the residual stream."""
        if t in anc_cache:
            return anc_cache[t]
        seen: set[int] = set()
        todo = [t]
        while todo:
            x = todo.pop()
            if x in stream or x not in producer:
                continue
            k = producer[x]
            if k in seen:
                continue
            seen.add(k)
            todo.extend(i for _, i in ops[k].inputs)
        anc_cache[t] = frozenset(seen)
        return anc_cache[t]

    def matrices(op_ids) -> set[str]:
        return {p for k in op_ids for _, p in ops[k].params if len(shapes[p]) >= 2 and width_class[p] == "hidden"}

    owner: dict[str, int] = {}
    if not events:
        result.ambiguous = "no residual addition found in the forward pass"
        return result
    for e, (k_add, branch) in enumerate(events):
        end_k = walk_back(branch)
        if end_k is None:
            result.ambiguous = f"a residual branch (op {ops[k_add].name} #{k_add}) does not end in a matrix"
            return result
        end = next(p for _, p in ops[end_k].params if len(shapes[p]) >= 2)
        body = ancestors(branch)
        mats = matrices(body)
        for m in mats:
            if m in owner and owner[m] != e:
                result.ambiguous = f"matrix '{m}' feeds two residual branches"
                return result
            owner[m] = e
        attn = [k for k in sorted(body) if ops[k].name == "scaled_dot_product_attention"]
        bil = [k for k in sorted(body) if ops[k].name in BILINEAR and len(ops[k].inputs) >= 2 and not ops[k].params]
        if attn or (len(bil) >= 2 and any(ops[k].name in ("softmax", "_softmax") for k in body)):
            if attn:
                args = dict(ops[attn[0]].inputs)
                q, k_, v = (matrices(ancestors(args[i])) if i in args else set() for i in (0, 1, 2))
            else:
                first, second = bil[0], bil[1]
                a, b = ops[first].inputs[0][1], ops[first].inputs[1][1]
                q, k_ = matrices(ancestors(a)), matrices(ancestors(b))
                ops2 = [t for _, t in ops[second].inputs]
                vs = [t for t in ops2 if first not in ancestors(t)]
                v = matrices(ancestors(vs[0])) if vs else set()
            for m in mats - {end}:
                hits = [role for role, src in (("attn.q", q), ("attn.k", k_), ("attn.v", v)) if m in src]
                if not hits:
                    result.ambiguous = f"matrix '{m}' in an attention branch feeds none of query, key and value"
                    return result
                result.roles[m] = hits[0]
                if len(hits) > 1:
                    result.fused.add(m)
            result.roles[end] = "attn.o"
            qk_path = set().union(*(ancestors(args[i]) for i in (0, 1) if i in args)) if attn else set()
            for kk in body:
                for _, p in ops[kk].params:
                    if len(shapes[p]) == 1 and not p.endswith(".bias"):
                        on_qk = kk in qk_path and matrices(ancestors(ops[kk].inputs[0][1]) if ops[kk].inputs else ())
                        result.roles[p] = "qk_norm" if on_qk else "norm"
        else:
            rest = sorted(mats - {end})
            result.roles[end] = "mlp.down"
            if len(rest) > 2:
                result.ambiguous = f"an MLP branch holds {len(rest) + 1} matrices; name them with patterns"
                return result
            for m in rest:
                result.roles[m] = "mlp.up"
            if len(rest) == 2:
                gate = _gate(ops, body, rest, walk_back)
                if gate is None:
                    result.ambiguous = f"cannot tell the gate from the up projection among {rest}"
                    return result
                result.roles[gate] = "mlp.gate"
            for kk in body:
                for _, p in ops[kk].params:
                    if len(shapes[p]) == 1 and not p.endswith(".bias"):
                        result.roles[p] = "norm"
        for kk in body:
            for _, p in ops[kk].params:
                if len(shapes[p]) == 1 and p.endswith(".bias"):
                    result.roles[p] = "bias"
    last = events[-1][0]
    for kk in range(last + 1, len(ops)):
        for _, p in ops[kk].params:
            if len(shapes[p]) == 1 and p not in result.roles:
                result.roles[p] = "final_norm"
    hidden = [n for n, c in width_class.items() if c == "hidden"]
    missing = [n for n in hidden if n not in result.roles]
    if missing:
        result.ambiguous = f"matrix '{missing[0]}' is in no residual branch"
    return result


def _gate(ops: list[_Op], body, pair: list[str], walk_back) -> str | None:
    """Of two non-final MLP matrices, the one whose output passes a nonlinearity before the gating product."""
    for k in sorted(body):
        op = ops[k]
        if op.name not in SCALING or len(op.inputs) != 2 or op.params:
            continue
        direct = {}
        for _, t in op.inputs:
            src = walk_back(t)
            direct[t] = next((p for _, p in ops[src].params if p in pair), None) if src is not None else None
        found = [p for p in direct.values() if p is not None]
        if len(found) == 1:
            return next(p for p in pair if p != found[0])
    return None


# Ops that only re-view a parameter (W.t(), W.T, W.transpose(0, 1), W.to(dtype)): their output is still that tensor.
def _passes(op: _Op) -> bool:
    return op.name in PRESERVING or (op.name in SCALING and op.scalar_other)


def readout_of(ops: list[_Op], output_id: int) -> str | None:
    """The parameter the op producing the model's output (through preserving ops and scalar multiplies) reads as
    its matrix: the readout, whether a module's own weight or another's reused in forward (`x @ emb.weight.t()`,
    `F.linear(x, emb.weight)`); None when the output does not come from a parameter."""
    producer = {t: k for k, op in enumerate(ops) for t in op.outputs}
    t = output_id
    while t in producer:
        op = ops[producer[t]]
        if op.params and not op.inputs:  # a view of a parameter
            return None
        if op.params:
            return op.params[0][1] if op.name in ("linear", "addmm", "matmul", "__matmul__", "mm", "bmm") else None
        if op.name in BILINEAR or op.name in ("linear", "mm"):
            for _, x in op.inputs:
                k = producer.get(x)
                while k is not None and ops[k].params == [] and _passes(ops[k]) and ops[k].inputs:
                    k = producer.get(ops[k].inputs[0][1])
                if k is not None and ops[k].params and not ops[k].inputs:
                    return ops[k].params[0][1]
            return None
        if not _passes(op) or not op.inputs:
            return None
        t = op.inputs[0][1]
    return None


def attention_head_dims(ops: list[_Op]) -> set[int]:
    """The head dimension of every scaled_dot_product_attention call: the last dim of its query."""
    return {op.shapes[0][-1] for op in ops if op.name == "scaled_dot_product_attention" and op.shapes}
