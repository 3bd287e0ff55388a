"""A plan's forward multipliers as removable hooks: `apply_multipliers(model, plan)` makes a model that has no
multiplier arguments compute what the rule prescribes (the role of `mup`'s MuReadout / MuSharedReadout).

| multiplier | applied to the output of |
|---|---|
| `output.mult`, `mult[unembed]` (a tied readout's whole 1/m_N included) | the model (its logits) |
| `embed.mult`, `mult[embed]` | each module owning an `embed` parameter |
| `residual.attn`, `residual.mlp` | each module owning an `attn.o` / `mlp.down` parameter (the branch's end) |
| `attn.scale` (over the model's 1/sqrt(d_head)) | each module owning `attn.q` (a fused qkv: its query slice) |

Every hook is proved exact on an example batch before training (`example=`, needed for the residual and
attention hooks): the residual stream entering the final norm must be the embedding plus every branch output
(`multiplier_hooks.verify_branches`), and scaling the hooked queries by c must change the attention exactly as
scaling the keys by c does. What no hook reaches (another `mult[<role>]`, an attention scale under QK-norm) is
refused in one line unless the model applies it itself (`model_applies=`). Hooks are plain module forward hooks
on the user's modules (normalised names, nothing on tensors), so they hold under torch.compile, DDP and FSDP2.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

import torch

from scalec.runtime.plan.model_params import normalise_name, unwrap
from scalec.runtime.plan.multiplier_hooks import MultiplierHookError, install, named_modules

# What hooks apply: `multiplier_hooks.install`'s sites and role multipliers, plus the attention scale here.
HOOKABLE: tuple[str, ...] = (
    "output.mult",
    "embed.mult",
    "residual.attn",
    "residual.mlp",
    "mult[unembed]",
    "mult[embed]",
    "attn.scale",
)
_RTOL = 1e-4  # float32 attention outputs of the two scalings agree to ~1e-6
_PROBE_FACTOR = 2.0  # the factor the attention check scales queries / keys by (any c != 1 proves the structure)


@dataclass
class MultiplierHandles:
    """What `apply_multipliers` installed: `applied` ({multiplier: value} the hooks apply), the torch hook handles,
    and `remove()` (also on leaving a `with` block), after which the model computes as before."""

    applied: dict[str, float]
    handles: list[Any] = field(default_factory=list)

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        if self.handles:
            forget_compiled()
        self.handles = []

    def __enter__(self) -> MultiplierHandles:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


def forget_compiled() -> None:
    """Drop torch.compile's cached graphs, so a model compiled before its hooks changed recompiles on its next
    call: dynamo does not guard on module hooks (`skip_nnmodule_hook_guards`), so a graph traced without them
    would keep running without them. Nothing to drop (and nothing imported) when nothing was compiled."""
    if "torch._dynamo" in sys.modules:
        torch.compiler.reset()


def _owner(param_name: str) -> str:
    return param_name.rpartition(".")[0]


def _identity(plan: Any, key: str) -> float:
    """The value at which a multiplier changes nothing: the model's own 1/sqrt(d_head) for the attention scale."""
    return float(plan.axes["d_head"]) ** -0.5 if key == "attn.scale" else 1.0


def _concerns_model(key: str, plan: Any) -> bool:
    """Whether the model has the tensors a multiplier acts on (a residual.attn of a model without attention
    has nothing to scale)."""
    roles = {e.role for e in plan.entries}
    if key.startswith("mult["):
        return key[5:-1] in roles
    if key == "output.mult":
        return "unembed" in roles or any(e.tied_with for e in plan.entries if e.role == "embed")
    if key == "embed.mult":
        return "embed" in roles
    if key == "attn.scale":
        return bool(roles & {"attn.q", "attn.k"})
    if key.startswith("residual."):
        return any(r.startswith(key.removeprefix("residual.") + ".") for r in roles)
    return True


def _model_applies(model: Any, plan: Any, model_applies: Collection[str] | str | None) -> set[str]:
    if model_applies is None:  # what the model's class declares (make_plan's default): the bundled GPT everything
        return set(getattr(type(unwrap(model)), "APPLIED_SITES", ()))
    if isinstance(model_applies, str):
        if model_applies != "all":
            raise MultiplierHookError(
                f"error: model_applies='{model_applies}' is not 'all'; pass 'all' or multiplier names such as "
                "{'output.mult'}"
            )
        return set(plan.multipliers)
    unknown = sorted(set(model_applies) - set(plan.multipliers))
    if unknown:
        raise MultiplierHookError(
            f"error: model_applies names '{unknown[0]}', which the plan does not have; its multipliers: "
            f"{', '.join(sorted(plan.multipliers))}"
        )
    return set(model_applies)


def to_apply(model: Any, plan: Any, model_applies: Collection[str] | str | None = None) -> dict[str, float]:
    """{multiplier: value} that hooks must apply: every one of the plan's multipliers that differs from identity,
    acts on tensors the model has, and the model does not apply itself. Refuses one that no hook reaches."""
    own = _model_applies(model, plan, model_applies)
    out = {}
    for key, value in plan.multipliers.items():
        if key in own or math.isclose(value, _identity(plan, key), rel_tol=1e-12) or not _concerns_model(key, plan):
            continue
        if key not in HOOKABLE:
            raise MultiplierHookError(
                f"error: forward multiplier {key} = {value:.6g} cannot be applied by a hook (hooks scale module "
                f"outputs); fold it into init and lr (scalec.load(rule, fold=True)), or apply it in the model and "
                f"pass model_applies={{'{key}'}}"
            )
        out[key] = float(value)
    return out


def apply_multipliers(
    model: Any, plan: Any, *, example: Any = None, model_applies: Collection[str] | str | None = None
) -> MultiplierHandles:
    """Install forward hooks that apply every multiplier of `plan` the model does not apply itself (see the module
    docstring); returns the handles (`.remove()` restores the original forward).

    example: a batch of input ids, needed to prove the residual and attention hooks exact. model_applies: the
    multipliers the model computes itself (default: its class's `APPLIED_SITES`, everything for the bundled GPT).
    A model compiled before its hooks changed recompiles on its next call. The plan must have been made with
    those sites in `applied_sites`, or make_plan would have folded them."""
    todo = to_apply(model, plan, model_applies)
    inner = unwrap(model)
    if isinstance(example, torch.Tensor):
        first = next(inner.parameters(), None)
        example = example if first is None else example.to(first.device)
    out = MultiplierHandles(dict(todo))
    basic = {k: v for k, v in todo.items() if k != "attn.scale"}
    if basic:
        hooks = install(inner, dataclasses.replace(plan, multipliers=basic), example=example)
        out.handles += hooks.handles
    if "attn.scale" in todo:
        try:
            out.handles += _attention_hooks(inner, plan, todo["attn.scale"] / _identity(plan, "attn.scale"), example)
        except Exception:
            out.remove()
            raise
    if out.handles:
        forget_compiled()
    return out


@dataclass(frozen=True)
class _Queries:
    """Where one attention's queries and keys come out: module names and, for a fused qkv, the slices."""

    q_module: str
    k_module: str
    q_slice: slice | None  # None: the whole output
    k_slice: slice | None


def _queries(plan: Any) -> list[_Queries]:
    roles = {e.role for e in plan.entries}
    if "qk_norm" in roles:
        raise MultiplierHookError(
            "error: attn.scale cannot be applied by a hook on this model: QK-norm normalises the queries after "
            "the projection; apply the scale in the attention and pass model_applies={'attn.scale'}"
        )
    qs = [e for e in plan.entries if e.role == "attn.q"]
    ks = [e for e in plan.entries if e.role == "attn.k"]
    if not qs:
        raise MultiplierHookError(
            "error: attn.scale needs the modules owning 'attn.q' parameters, and none binds to attn.q; bind the "
            "query projections (patterns={'<glob>': 'attn.q'})"
        )
    if ks:  # separate projections: block i's keys are the i-th attn.k owner
        if len(ks) != len(qs):
            raise MultiplierHookError(
                f"error: {len(qs)} parameters bind to attn.q but {len(ks)} to attn.k; attn.scale hooks need one "
                "key projection per query projection"
            )
        return [_Queries(_owner(q.name), _owner(k.name), None, None) for q, k in zip(qs, ks, strict=True)]
    # A fused qkv holds [q; k; v] along its output (GPT-2, nanoGPT): queries first, as wide as the model.
    out = []
    for q in qs:
        kv = (q.fan_out - q.fan_in) // 2
        if kv <= 0:
            raise MultiplierHookError(
                f"error: '{q.name}' is bound to attn.q, no parameter binds to attn.k, and its output ({q.fan_out}) "
                f"is not a fused [q; k; v] wider than its input ({q.fan_in}); bind the key projections to attn.k"
            )
        owner = _owner(q.name)
        out.append(_Queries(owner, owner, slice(0, q.fan_in), slice(q.fan_in, q.fan_in + kv)))
    return out


def _scale_part(factor: float, part: slice | None) -> Callable:
    def hook(_module, _inputs, output):
        if part is None:
            return output * factor
        return torch.cat((output[..., : part.start], output[..., part] * factor, output[..., part.stop :]), dim=-1)

    return hook


def _attention_hooks(model: Any, plan: Any, factor: float, example: Any) -> list[Any]:
    """Hooks multiplying the queries by `factor` (rule's attention scale / the model's 1/sqrt(d_head)), after
    proving on `example` that they scale the attention logits."""
    attn = _queries(plan)
    modules = named_modules(model)
    _verify_queries(model, plan, attn, modules, example)
    return [modules[a.q_module].register_forward_hook(_scale_part(factor, a.q_slice)) for a in attn]


def _verify_queries(model: Any, plan: Any, attn: list[_Queries], modules: dict[str, Any], example: Any) -> None:
    """Raise unless scaling the hooked queries by c gives the attention outputs (inputs of the attn.o modules)
    that scaling the keys by c gives, and differs from not scaling: then the hook scales q.k and nothing else.
    q, k and v weights are drawn at random for the check (a zero-initialised query would prove nothing) and
    restored."""
    if example is None:
        raise MultiplierHookError(
            "error: attn.scale hooks need an example batch of input ids (apply_multipliers(..., example=ids)) to "
            "verify that the hooked modules compute the queries"
        )
    outs = list(dict.fromkeys(_owner(e.name) for e in plan.entries if e.role == "attn.o"))
    if not outs:
        raise MultiplierHookError(
            "error: attn.scale hooks are verified on the attention outputs, and no parameter binds to attn.o; bind "
            "each attention's output projection (patterns={'<glob>': 'attn.o'})"
        )
    seen: dict[str, Any] = {}

    def record(name: str) -> Callable:
        def pre_hook(_module, args):
            seen[name] = args[0].detach().float().clone()

        return pre_hook

    projections = [e for e in plan.entries if e.role in ("attn.q", "attn.k", "attn.v") and len(e.shape) == 2]
    tensors = {n: p for n, p in model.named_parameters(remove_duplicate=False)}
    saved = {}
    recorders = [modules[n].register_forward_pre_hook(record(n)) for n in outs]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for e in projections:
                p = _parameter(tensors, e.name)
                saved[e.name] = p.detach().clone()
                local = p.to_local() if hasattr(p, "to_local") else p  # an FSDP2 shard: any random values do
                local.normal_(0.0, e.fan_in**-0.5)
            runs = []
            for which in (None, "q", "k"):
                handles = []
                for a in attn if which else ():
                    name, part = (a.q_module, a.q_slice) if which == "q" else (a.k_module, a.k_slice)
                    handles.append(modules[name].register_forward_hook(_scale_part(_PROBE_FACTOR, part)))
                try:
                    model(example)
                finally:
                    for h in handles:
                        h.remove()
                runs.append(torch.cat([seen[n].flatten() for n in outs]))
    finally:
        for h in recorders:
            h.remove()
        with torch.no_grad():
            for name, value in saved.items():
                _parameter(tensors, name).copy_(value)
        model.train(was_training)
    plain, by_q, by_k = runs
    size = max(float(plain.norm()), 1e-30)
    mismatch, change = float((by_q - by_k).norm()) / size, float((by_q - plain).norm()) / size
    if not (mismatch < _RTOL and change > 100 * _RTOL):
        what = f"relative mismatch {mismatch:.2g}" if mismatch >= _RTOL else f"relative change {change:.2g}"
        raise MultiplierHookError(
            f"error: scaling the output of '{attn[0].q_module}' (bound to attn.q) does not scale the attention "
            f"logits as scaling the keys does ({what}), so an attn.scale hook there would not be exact; bind the "
            "query and key projections (attn.q, attn.k), or apply the scale in the model and pass "
            "model_applies={'attn.scale'}"
        )


def _parameter(tensors: dict[str, Any], name: str) -> Any:
    """The parameter of a normalised plan name in a model whose own names may carry wrapper segments."""
    for n, p in tensors.items():
        if normalise_name(n) == name:
            return p
    raise MultiplierHookError(f"error: the model has no parameter '{name}'; apply the plan made for this model")
