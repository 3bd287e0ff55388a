"""What a coordinate check trains: the bundled GPT, or any model a factory `FUNC(width, depth)` builds.

A factory's model takes a LongTensor [batch, seq] of byte ids and returns logits [batch, seq, V >= 256] (or an
object with `.logits`). Its parameters bind to roles by `patterns` ({glob: role}), else by a preset that
recognises it, else by inference (the model at twice the width, the module graph). Forward multipliers are
applied by hooks (`runtime.plan.multiplier_hooks`); the attention scale, out of a hook's reach, is folded by
make_plan into the queries where that is exact, refused otherwise. The recorded modules are those the roles name.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from scalec.errors import ScalecError
from scalec.runtime.plan.multiplier_hooks import MultiplierHookError, SiteRecorder, locate
from scalec.runtime.plan.planner import make_plan
from scalec.runtime.studies.coord_metrics import CoordCheckError
from scalec.runtime.studies.user_model import (
    UserModel,
    binding_record,
    byte_logits,
    file_sha256,
    head_dim_of,
    load_function,
    load_roles,
)
from scalec.runtime.trainer.data import Batch
from scalec.runtime.trainer.gpt import GPT, GPTConfig

__all__ = ["GPTSubject", "Instance", "ModelSubject", "coord_bindings", "head_dim_of", "load_factory", "load_roles"]
__all__ += ["record_binding"]


@dataclass
class Instance:
    """One built and initialised model with its optimizer: `loss(batch)` for a training step, `capture(idx)`
    for {module: output} on the probe batch (keys as `coord_check.MODULES` plus `attn.i` / `mlp.i` per block)."""

    model: Any
    optimizer: Any
    loss: Callable[[Batch], torch.Tensor]
    capture: Callable[[torch.Tensor], dict[str, torch.Tensor]]
    close: Callable[[], None]


class GPTSubject:
    """The bundled GPT, which takes every forward multiplier as a constructor argument."""

    label = "bundled GPT"

    def plan(self, rules: Any, width: int, depth: int, cfg: Any) -> tuple[Any, Any]:
        """(the rule's plan, the GPTConfig) at (width, depth), planned on the meta device."""
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


class ModelSubject(UserModel):
    """A user's model factory `FUNC(width, depth) -> nn.Module` (see `user_model.UserModel`) in a coordinate check."""

    Error = CoordCheckError

    def build(self, rules: Any, width: int, depth: int, seed: int, cfg: Any, probe: torch.Tensor) -> Instance:
        """Build FUNC(width, depth) with `seed`, plan it, initialise it, hook its multipliers and modules."""
        label = f"{self.label}({width}, {depth})"
        model, plan, hooks = self.bind(
            rules,
            width,
            depth,
            seed,
            cfg.hparams(rules),
            head_dim=cfg.head_dim,
            example=probe,
            before_hooks=lambda m, p: _check_branch_count(locate(m, p), depth),
        )
        try:
            recorder = SiteRecorder(model, hooks.sites)
        except ScalecError as exc:
            hooks.remove()
            raise CoordCheckError(f"error: {label}: {str(exc).removeprefix('error: ')}") from None

        @torch.no_grad()
        def capture(idx: torch.Tensor) -> dict[str, torch.Tensor]:
            was_training = model.training
            model.eval()  # no dropout on the probe
            recorder.out, recorder.active = {}, True
            try:
                logits = byte_logits(model(idx), idx, label, CoordCheckError, "coord-check feeds")
            finally:
                recorder.active = False
                model.train(was_training)
            return _with_branch_sums({**recorder.out, "logits": logits.detach().float().clone()}, depth)

        def loss(b: Batch) -> torch.Tensor:
            logits = byte_logits(model(b.x), b.x, label, CoordCheckError, "coord-check feeds")
            return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), b.y.reshape(-1))

        def close() -> None:
            recorder.remove()
            hooks.remove()

        model.train()
        return Instance(model, plan.optimizer(model), loss, capture, close)


def coord_bindings(subject: UserModel, rules: Any, cfg: Any) -> dict[str, dict[str, Any]]:
    """What the plan binds, folds and hooks at each (width, depth) a coordinate check builds, planned again on the
    meta device (so it holds wherever, and in however many processes, the check trained)."""
    shapes = [(w, cfg.depth_for_width_sweep) for w in cfg.widths] if "width" in cfg.sweeps else []
    shapes += [(cfg.width_for_depth_sweep, d) for d in cfg.depths] if "depth" in cfg.sweeps else []
    out = {}
    for width, depth in dict.fromkeys(shapes):
        model, plan = subject.plan(rules, width, depth, cfg.hparams(rules), cfg.head_dim)
        out[f"n={width},L={depth}"] = binding_record(plan, locate(model, plan))
    return out


def record_binding(path: Path, subject: UserModel, rules: Any, cfg: Any, spec: str | None = None) -> None:
    """Add to coord_check.json the binding at each shape, and for a FILE.py:FUNC model its content hash and roles."""
    data = json.loads(path.read_text())
    if spec is not None and not spec.startswith("python:"):
        data["model_sha256"] = file_sha256(spec.rpartition(":")[0])
    data["roles"] = subject.patterns
    data["binding"] = coord_bindings(subject, rules, cfg)
    path.write_text(json.dumps(data, indent=2) + "\n")


def _check_branch_count(sites: Any, depth: int) -> None:
    """Every block's attention and MLP branch must be located: `depth` modules bound to attn.o and mlp.down."""
    for kind, role in (("attn", "attn.o"), ("mlp", "mlp.down")):
        found = len(sites.branches(kind))
        if found != depth:
            raise MultiplierHookError(
                f"error: the model has {found} module(s) owning '{role}' parameters, expected one "
                f"per block ({depth}); bind each block's last {kind} matrix to {role} (--roles ROLES.json, e.g. "
                f'{{"*.{kind}.out.weight": "{role}"}}) or check that FUNC builds `depth` blocks'
            )


def load_factory(spec: str) -> Callable[[int, int], Any]:
    """`FILE.py:FUNC` -> the function FUNC defined in FILE.py (its folder importable, as for a script)."""
    return load_function(spec, "--model", "(width, depth)")
