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

from collections.abc import Iterable, Iterator
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


def _passes(op: _Op) -> bool:
    """Whether the op keeps its first operand's tensor: a stream-preserving op or a scalar multiply/divide."""
    return op.name in PRESERVING or (op.name in SCALING and op.scalar_other)


class _OpGraph:
    """The recorded ops with what every phase of `analyse` reads: the producer of each tensor, the residual
    stream and its branch events (an addition of a non-stream tensor to it), and cached branch bodies."""

    def __init__(
        self, ops: list[_Op], shapes: dict[str, tuple[int, ...]], width_class: dict[str, str], seeds: frozenset[int]
    ) -> None:
        self.ops, self.shapes, self.width_class = ops, shapes, width_class
        self.producer: dict[int, int] = {}
        for k, op in enumerate(ops):
            for t in op.outputs:
                self.producer.setdefault(t, k)
        self.stream: set[int] = set(seeds)
        self.embeds: list[str] = []  # lookup tables, in the order the pass read them
        self.events: list[tuple[int, int]] = []  # (add op index, branch tensor id)
        self._read_stream()
        self._ancestors: dict[int, frozenset[int]] = {}

    def _read_stream(self) -> None:
        """Grow the stream from lookups, input-class matrices and the seeds through additions and preserving ops;
        record each addition of a non-stream tensor as a branch event."""
        inputs_class = {n for n, c in self.width_class.items() if c == "input"}
        for k, op in enumerate(self.ops):
            ins = [t for _, t in op.inputs]
            if op.lookup or (any(p in inputs_class for _, p in op.params) and op.name in ("linear", "addmm", "matmul")):
                self.stream.update(op.outputs)
                if op.lookup:
                    self.embeds.extend(p for _, p in op.params if len(self.shapes[p]) == 2)
            elif op.name in ADDS and any(t in self.stream for t in ins):
                self.events.extend((k, t) for t in ins if t not in self.stream)
                self.stream.update(op.outputs)
            elif ins and ins[0] in self.stream and not op.params and _passes(op):
                self.stream.update(op.outputs)

    def walk_back(self, t: int) -> int | None:
        """The op that produced `t` through preserving ops and scalar multiplies."""
        while t in self.producer:
            op = self.ops[self.producer[t]]
            if op.params and any(len(self.shapes[p]) >= 2 for _, p in op.params):
                return self.producer[t]
            if not _passes(op) or not op.inputs:
                return None
            t = op.inputs[0][1]
        return None

    def ancestors(self, t: int) -> frozenset[int]:
        """Op indices upstream of tensor `t`, not crossing the residual stream."""
        if t in self._ancestors:
            return self._ancestors[t]
        seen: set[int] = set()
        todo = [t]
        while todo:
            x = todo.pop()
            if x in self.stream or x not in self.producer:
                continue
            k = self.producer[x]
            if k in seen:
                continue
            seen.add(k)
            todo.extend(i for _, i in self.ops[k].inputs)
        self._ancestors[t] = frozenset(seen)
        return self._ancestors[t]

    def matrices(self, op_ids: Iterable[int]) -> set[str]:
        """The hidden-class matrices the ops `op_ids` read."""
        return {
            p
            for k in op_ids
            for _, p in self.ops[k].params
            if len(self.shapes[p]) >= 2 and self.width_class[p] == "hidden"
        }

    def vectors(self, op_ids: Iterable[int], biases: bool) -> Iterator[tuple[int, str]]:
        """(op index, name) of each 1-D parameter the ops read: the `.bias` ones if `biases`, else the others."""
        for k in op_ids:
            for _, p in self.ops[k].params:
                if len(self.shapes[p]) == 1 and p.endswith(".bias") == biases:
                    yield k, p


def analyse(
    ops: list[_Op], shapes: dict[str, tuple[int, ...]], width_class: dict[str, str], seeds: frozenset[int] = frozenset()
) -> GraphRoles:
    """Residual branches and roles from the recorded ops (see the module docstring); `seeds`: ids of tensors
    that start the residual stream besides the embeddings' outputs (a model input of activations)."""
    result = GraphRoles()
    graph = _OpGraph(ops, shapes, width_class, seeds)
    result.roles.update((p, "embed") for p in graph.embeds)
    if not graph.events:
        result.ambiguous = "no residual addition found in the forward pass"
        return result
    owner: dict[str, int] = {}  # matrix -> index of the branch event whose body holds it
    for e, (k_add, branch) in enumerate(graph.events):
        result.ambiguous = _branch_roles(graph, e, k_add, branch, owner, result)
        if result.ambiguous is not None:
            return result
    _final_norms(graph, graph.events[-1][0], result.roles)
    result.ambiguous = _unplaced_matrix(width_class, result.roles)
    return result


def _branch_roles(
    graph: _OpGraph, e: int, k_add: int, branch: int, owner: dict[str, int], result: GraphRoles
) -> str | None:
    """Roles of the parameters in branch event `e` (added by op `k_add`); why not, when the graph cannot say."""
    end_k = graph.walk_back(branch)
    if end_k is None:
        return f"a residual branch (op {graph.ops[k_add].name} #{k_add}) does not end in a matrix"
    end = next(p for _, p in graph.ops[end_k].params if len(graph.shapes[p]) >= 2)
    body = graph.ancestors(branch)
    mats = graph.matrices(body)
    for m in sorted(mats):  # sorted: the same matrix is named whatever the hash seed
        if m in owner and owner[m] != e:
            return f"matrix '{m}' feeds two residual branches"
        owner[m] = e
    operands = _attention_operands(graph, body)
    if operands is not None:
        qkv, qk_path = operands
        why = _attention_roles(graph, body, mats, end, qkv, qk_path, result)
    else:
        why = _mlp_roles(graph, body, mats, end, result.roles)
    if why is None:
        result.roles.update((p, "bias") for _, p in graph.vectors(body, biases=True))
    return why


def _attention_operands(graph: _OpGraph, body: frozenset[int]) -> tuple[list[set[str]], set[int]] | None:
    """For an attention branch, the matrices feeding query, key and value, and the ops upstream of the query
    and key of scaled_dot_product_attention (empty for a matmul-softmax-matmul); None for any other branch."""
    ops = graph.ops
    attn = [k for k in sorted(body) if ops[k].name == "scaled_dot_product_attention"]
    bil = [k for k in sorted(body) if ops[k].name in BILINEAR and len(ops[k].inputs) >= 2 and not ops[k].params]
    if attn:
        args = dict(ops[attn[0]].inputs)
        qkv = [graph.matrices(graph.ancestors(args[i])) if i in args else set() for i in (0, 1, 2)]
        return qkv, set().union(*(graph.ancestors(args[i]) for i in (0, 1) if i in args))
    if len(bil) >= 2 and any(ops[k].name in ("softmax", "_softmax") for k in body):
        first, second = bil[0], bil[1]
        a, b = ops[first].inputs[0][1], ops[first].inputs[1][1]
        vs = [t for _, t in ops[second].inputs if first not in graph.ancestors(t)]
        v = graph.matrices(graph.ancestors(vs[0])) if vs else set()
        return [graph.matrices(graph.ancestors(a)), graph.matrices(graph.ancestors(b)), v], set()
    return None


def _attention_roles(
    graph: _OpGraph,
    body: frozenset[int],
    mats: set[str],
    end: str,
    qkv: list[set[str]],
    qk_path: set[int],
    result: GraphRoles,
) -> str | None:
    """attn.q/k/v by the operand each matrix feeds (several: fused, bound as the first), attn.o for the end;
    vectors on the q/k path after a projection are qk_norm, the others norm."""
    for m in sorted(mats - {end}):
        hits = [role for role, src in zip(("attn.q", "attn.k", "attn.v"), qkv, strict=True) if m in src]
        if not hits:
            return f"matrix '{m}' in an attention branch feeds none of query, key and value"
        result.roles[m] = hits[0]
        if len(hits) > 1:
            result.fused.add(m)
    result.roles[end] = "attn.o"
    for k, p in graph.vectors(body, biases=False):
        inputs = graph.ops[k].inputs
        on_qk = k in qk_path and graph.matrices(graph.ancestors(inputs[0][1]) if inputs else ())
        result.roles[p] = "qk_norm" if on_qk else "norm"
    return None


def _mlp_roles(graph: _OpGraph, body: frozenset[int], mats: set[str], end: str, roles: dict[str, str]) -> str | None:
    """mlp.down for the end, mlp.up for the others (mlp.gate for the one of two that passes a nonlinearity
    before the gating product), norm for the vectors; at most three matrices."""
    rest = sorted(mats - {end})
    roles[end] = "mlp.down"
    if len(rest) > 2:
        return f"an MLP branch holds {len(rest) + 1} matrices; name them with patterns"
    for m in rest:
        roles[m] = "mlp.up"
    if len(rest) == 2:
        gate = _gate(graph, body, rest)
        if gate is None:
            return f"cannot tell the gate from the up projection among {rest}"
        roles[gate] = "mlp.gate"
    roles.update((p, "norm") for _, p in graph.vectors(body, biases=False))
    return None


def _gate(graph: _OpGraph, body: frozenset[int], pair: list[str]) -> str | None:
    """Of two non-final MLP matrices, the one whose output passes a nonlinearity before the gating product."""
    for k in sorted(body):
        op = graph.ops[k]
        if op.name not in SCALING or len(op.inputs) != 2 or op.params:
            continue
        direct = {}
        for _, t in op.inputs:
            src = graph.walk_back(t)
            direct[t] = next((p for _, p in graph.ops[src].params if p in pair), None) if src is not None else None
        found = [p for p in direct.values() if p is not None]
        if len(found) == 1:
            return next(p for p in pair if p != found[0])
    return None


def _final_norms(graph: _OpGraph, last: int, roles: dict[str, str]) -> None:
    """Vectors read after the last residual addition, and in no branch, are the final norm."""
    for k in range(last + 1, len(graph.ops)):
        for _, p in graph.ops[k].params:
            if len(graph.shapes[p]) == 1 and p not in roles:
                roles[p] = "final_norm"


def _unplaced_matrix(width_class: dict[str, str], roles: dict[str, str]) -> str | None:
    """Why the roles are incomplete: the first hidden matrix no branch placed; None when every one has a role."""
    missing = [n for n, c in width_class.items() if c == "hidden" and n not in roles]
    return f"matrix '{missing[0]}' is in no residual branch" if missing else None


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
