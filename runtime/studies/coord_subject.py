"""What a coordinate check trains: the bundled GPT, or any model a factory `FUNC(width, depth)` builds.

A factory's model takes a LongTensor [batch, seq] of byte ids and returns logits [batch, seq, V >= 256] (or an
object with `.logits`). Its parameters bind to roles by `patterns` ({glob: role}), else by a preset that
recognises it, else by inference (the model at twice the width, the module graph). Forward multipliers are
applied by hooks (`runtime.plan.multiplier_hooks`); the attention scale, out of a hook's reach, is folded by
make_plan into the queries where that is exact, refused otherwise. The recorded modules are those the roles name.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from scalec.errors import ScalecError
from scalec.runtime.studies.coord_check import CoordCheckError
from scalec.runtime.trainer.data import Batch

BYTE_VOCAB = 256


@dataclass
class Instance:
    """One built and initialised model with its optimizer: `loss(batch)` for a training step, `capture(idx)`
    for {module: output} on the probe batch (keys as `coord_check.MODULES` plus `attn.i` / `mlp.i` per block)."""

    model: Any
    optimizer: Any
    loss: Callable[[Batch], torch.Tensor]
    capture: Callable[[torch.Tensor], dict[str, torch.Tensor]]
    close: Callable[[], None]


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


class GPTSubject:
    """The bundled GPT, which takes every forward multiplier as a constructor argument."""

    label = "bundled GPT"

    def plan(self, rules: Any, width: int, depth: int, cfg: Any) -> tuple[Any, Any]:
        """(the rule's plan, the GPTConfig) at (width, depth), planned on the meta device."""
        from scalec.runtime.plan.planner import make_plan
        from scalec.runtime.trainer.gpt import GPT, GPTConfig

        shape = rules.shape(n=float(width), L=float(depth), d_head=float(cfg.head_dim))
        gcfg = GPTConfig(width=width, depth=depth, head_dim=cfg.head_dim, seq_len=cfg.seq_len)
        with torch.device("meta"):
            return make_plan(rules, GPT(gcfg), shape, cfg.hparams(rules)), gcfg

    def run_key(self, rules: Any, width: int, depth: int, cfg: Any) -> str:
        """Everything one (width, depth) point's training depends on besides the data: the model's config, every
        number of the plan (per-tensor init, optimizer settings, multipliers; exact float reprs), the steps and
        the seeds. Two points with equal keys train identically, whatever rules they came from."""
        plan, gcfg = self.plan(rules, width, depth, cfg)
        data = plan.to_dict()
        return json.dumps(
            {
                "model": gcfg.to_dict(),
                "parameters": data["parameters"],
                "multipliers": data["multipliers"],
                "training": {"steps": cfg.steps, "seeds": cfg.seeds, "batch": cfg.batch, "seq_len": cfg.seq_len},
            },
            sort_keys=True,
        )

    def build(self, rules: Any, width: int, depth: int, seed: int, cfg: Any, probe: torch.Tensor) -> Instance:
        """Plan, build and initialise the GPT at (width, depth) with `seed`."""
        from scalec.runtime.trainer.gpt import GPT

        plan, gcfg = self.plan(rules, width, depth, cfg)
        torch.manual_seed(seed)
        model = GPT(gcfg, plan.multipliers)
        torch.manual_seed(seed)
        plan.init_(model)
        opt = plan.optimizer(model)
        probe_hooks = _GPTProbe(model)
        return Instance(model, opt, lambda b: model(b.x, b.y), probe_hooks.capture, probe_hooks.remove)


class _GPTProbe:
    """Forward hooks on the GPT's named modules; its attn/mlp modules return the branch contributions."""

    def __init__(self, model: Any) -> None:
        self.model, self.active, self.out = model, False, {}
        self.handles = [
            model.embed.register_forward_hook(self._hook("embed")),
            model.final_norm.register_forward_hook(self._hook("final_norm")),
            model.unembed.register_forward_hook(self._hook("logits")),
            model.blocks[-1].register_forward_hook(self._hook("residual")),
        ]
        for i, block in enumerate(model.blocks):
            self.handles.append(block.attn.register_forward_hook(self._hook(f"attn.{i}")))
            self.handles.append(block.mlp.register_forward_hook(self._hook(f"mlp.{i}")))

    def _hook(self, key: str) -> Callable:
        def hook(_module, _inputs, output):
            if self.active:
                self.out[key] = output.detach().float().clone()

        return hook

    @torch.no_grad()
    def capture(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        self.out, self.active = {}, True
        try:
            self.model(idx)
        finally:
            self.active = False
        return _with_branch_sums(dict(self.out), len(self.model.blocks))

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def _with_branch_sums(out: dict[str, torch.Tensor], depth: int) -> dict[str, torch.Tensor]:
    """Add "attn"/"mlp": the summed contributions of all blocks to the residual stream."""
    for kind in ("attn", "mlp"):
        out[kind] = sum(out[f"{kind}.{i}"] for i in range(depth))
    return out


def head_dim_of(model: Any) -> int | None:
    """The attention head dimension a model declares (config.head_dim, hidden_size / num_attention_heads, or a
    `head_dim` attribute), None when it declares none."""
    config = getattr(model, "config", None)
    for obj in (config, model):
        value = getattr(obj, "head_dim", None)
        if isinstance(value, int) and value > 0:
            return value
    hidden, heads = getattr(config, "hidden_size", None), getattr(config, "num_attention_heads", None)
    if isinstance(hidden, int) and isinstance(heads, int) and heads > 0 and hidden % heads == 0:
        return hidden // heads
    return None


class ModelSubject:
    """A user's model factory `FUNC(width, depth) -> nn.Module`, bound by `patterns` or a preset / inference."""

    def __init__(self, factory: Callable[[int, int], Any], patterns: Mapping[str, str] | None = None, label=None):
        self.factory = factory
        self.patterns = dict(patterns) if patterns else None
        self.label = label or getattr(factory, "__name__", "model")

    def make(self, width: int, depth: int, meta: bool = False) -> Any:
        """FUNC(width, depth), its failures as one-line errors."""
        from torch import nn

        try:
            if meta:
                with torch.device("meta"):
                    model = self.factory(width, depth)
            else:
                model = self.factory(width, depth)
        except Exception as exc:  # the user's code: any failure becomes one line naming the call
            raise CoordCheckError(f"error: {self.label}({width}, {depth}) raised {_one_line(exc)}") from None
        if not isinstance(model, nn.Module):
            raise CoordCheckError(
                f"error: {self.label}({width}, {depth}) returned {type(model).__name__}, not a torch nn.Module"
            )
        return model

    def _binding(self, model: Any, width: int, depth: int) -> dict[str, Any]:
        """make_plan's preset / patterns / base_model: patterns when given, else a preset that recognises the
        model, else inference (a second instance at twice the width, and the module graph on the probe)."""
        from scalec.runtime.plan.binding import unique_parameters, unwrap
        from scalec.runtime.plan.presets import detect_preset

        if self.patterns:
            return {"preset": "auto", "patterns": self.patterns}
        if detect_preset(unwrap(model), [n for n, _, _ in unique_parameters(model)]) is not None:
            return {"preset": "auto"}
        return {"preset": "infer", "base_model": self.make(2 * width, depth, meta=True)}

    def _check_head_dim(self, rules: Any, d_head: int | None) -> None:
        """A rule whose attention scale depends on d_head needs the model's head dimension (else the plan would
        silently assume the rule's base d_head)."""
        import sympy

        from scalec.compiler.folding import DEFAULT_ATTN_SCALE

        if d_head is None and sympy.simplify(rules.ir.sites["attn.scale"].expr / DEFAULT_ATTN_SCALE) != 1:
            raise CoordCheckError(
                f"error: {rules.name}'s attn.scale depends on the head dimension and {self.label}'s model "
                "declares none (config.head_dim or a head_dim attribute); pass head_dim= (--head-dim)"
            )

    def build(self, rules: Any, width: int, depth: int, seed: int, cfg: Any, probe: torch.Tensor) -> Instance:
        """Build FUNC(width, depth) with `seed`, plan it, initialise it, hook its multipliers and modules."""
        from scalec.runtime.plan.multiplier_hooks import HOOK_ROLE_MULTS, HOOK_SITES, SiteRecorder, install, locate
        from scalec.runtime.plan.planner import make_plan

        torch.manual_seed(seed)
        model = self.make(width, depth)
        d_head = cfg.head_dim or head_dim_of(model)
        self._check_head_dim(rules, d_head)
        axes = {"n": float(width), "L": float(depth), **({"d_head": float(d_head)} if d_head else {})}
        label = f"{self.label}({width}, {depth})"
        try:  # every refusal names the model it refused
            # The hooks apply the output, embedding and residual multipliers; make_plan folds the rest (the
            # attention scale into the queries, per-role multipliers) where exact, and refuses otherwise.
            plan = make_plan(
                rules,
                model,
                axes,
                cfg.hparams(rules),
                applied_sites=(*HOOK_SITES, *HOOK_ROLE_MULTS),
                fold=True,
                example_input=probe,
                **self._binding(model, width, depth),
            )
            torch.manual_seed(seed)
            plan.init_(model)
            _check_branch_count(locate(model, plan), depth)
            hooks = install(model, plan, example=probe)
            recorder = SiteRecorder(model, hooks.sites)
        except CoordCheckError:
            raise
        except ScalecError as exc:
            raise CoordCheckError(f"error: {label}: {str(exc).removeprefix('error: ')}") from None

        @torch.no_grad()
        def capture(idx: torch.Tensor) -> dict[str, torch.Tensor]:
            was_training = model.training
            model.eval()  # no dropout on the probe
            recorder.out, recorder.active = {}, True
            try:
                logits = _logits(model(idx), idx, label)
            finally:
                recorder.active = False
                model.train(was_training)
            return _with_branch_sums({**recorder.out, "logits": logits.detach().float().clone()}, depth)

        def loss(b: Batch) -> torch.Tensor:
            logits = _logits(model(b.x), b.x, label)
            return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), b.y.reshape(-1))

        def close() -> None:
            recorder.remove()
            hooks.remove()

        model.train()
        return Instance(model, plan.optimizer(model), loss, capture, close)


def _check_branch_count(sites: Any, depth: int) -> None:
    """Every block's attention and MLP branch must be located: `depth` modules bound to attn.o and mlp.down."""
    from scalec.runtime.plan.multiplier_hooks import MultiplierHookError

    for kind, role in (("attn", "attn.o"), ("mlp", "mlp.down")):
        found = len(sites.branches(kind))
        if found != depth:
            raise MultiplierHookError(
                f"error: the model has {found} module(s) owning '{role}' parameters, expected one "
                f"per block ({depth}); bind each block's last {kind} matrix to {role} (--roles ROLES.json, e.g. "
                f'{{"*.{kind}.out.weight": "{role}"}}) or check that FUNC builds `depth` blocks'
            )


def _logits(out: Any, idx: torch.Tensor, label: str) -> torch.Tensor:
    """The logits of a model output, checked to be [batch, seq, V >= 256]."""
    logits = getattr(out, "logits", out)
    batch, seq = idx.shape
    if not isinstance(logits, torch.Tensor) or logits.dim() != 3 or tuple(logits.shape[:2]) != (batch, seq):
        got = list(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise CoordCheckError(
            f"error: {label} returned {got} for input ids [{batch}, {seq}]; the model must return logits "
            "[batch, seq, V] or an object with .logits"
        )
    if logits.shape[-1] < BYTE_VOCAB:
        raise CoordCheckError(
            f"error: {label} has a vocabulary of {logits.shape[-1]}; coord-check feeds byte ids, so build it with "
            f"V >= {BYTE_VOCAB}"
        )
    return logits


def load_factory(spec: str) -> Callable[[int, int], Any]:
    """`FILE.py:FUNC` -> the function FUNC defined in FILE.py (imported as a fresh module)."""
    path_text, sep, func = spec.rpartition(":")
    if not sep or not path_text or not func:
        raise CoordCheckError(f"error: --model '{spec}': expected FILE.py:FUNC, e.g. --model my_model.py:build")
    path = Path(path_text)
    if not path.is_file():
        raise CoordCheckError(f"error: --model '{spec}': no such file {path}")
    name = f"scalec_user_model_{abs(hash(str(path.resolve()))) % 10**10}"
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise CoordCheckError(f"error: --model '{spec}': {path} is not a Python file")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    try:
        module_spec.loader.exec_module(module)
    except Exception as exc:  # the user's file: report its failure in one line
        raise CoordCheckError(f"error: importing {path} raised {_one_line(exc)}") from None
    factory = getattr(module, func, None)
    if not callable(factory):
        raise CoordCheckError(f"error: --model '{spec}': {path} defines no function {func}(width, depth)")
    return factory


def load_roles(path: str | Path) -> dict[str, str]:
    """ROLES.json: a JSON object {glob: role} (as make_plan's `patterns=`)."""
    try:
        data = json.loads(Path(path).read_text())
    except OSError as exc:
        raise CoordCheckError(f"error: --roles {path}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise CoordCheckError(f"error: --roles {path}: not JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise CoordCheckError(
            f'error: --roles {path}: expected an object of glob -> role, e.g. {{"blocks.*.mlp.down.weight": '
            '"mlp.down"}'
        )
    return data
