"""Coordinate check of any model trained by your own loop: `scalec.coord_check(rule, build=, objective=, example=)`.

For each width (at the base depth) and depth (at the base width) and seed, the model `build(width, depth)` is bound,
planned, initialised and hooked as in the studies, its outputs are recorded on `example` (any input the model takes)
at init, `objective(model, optimizer, run)` trains it for `steps`, and the outputs are recorded again. Per role (the
modules owning that role's parameters, averaged) and for the model's output: activation RMS |h_T| and update RMS
|h_T - h_0|; log-log slopes across the sizes and the verdicts of `coord_check` (same thresholds): "unstable" when
either grows beyond growth_max across the range, "lazy" when the update shrinks below decay_min, else "pass".
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from scalec.errors import ScalecError
from scalec.runtime.plan.multiplier_hooks import named_modules
from scalec.runtime.studies.coord_metrics import CoordCheckError
from scalec.runtime.studies.user_model import UserModel, binding_record, one_line
from scalec.runtime.studies.user_objective import Run, _device, _loss_value

OUTPUT = "output"


@dataclass(frozen=True)
class RoleVerdict:
    """One role's (or the output's) verdict on one sweep, with the fitted ratios across the range."""

    sweep: str
    role: str
    update_slope: float
    update_ratio: float
    act_slope: float
    act_ratio: float
    status: str


@dataclass
class ObjectiveCoordCheck:
    """Per sweep: the sizes, and per role the mean activation and update RMS at each size; verdicts; bindings."""

    rule: str
    model: str
    steps: int
    sizes: dict[str, list[int]]
    act: dict[str, dict[str, list[float]]]
    update: dict[str, dict[str, list[float]]]
    verdicts: list[RoleVerdict]
    bindings: dict[str, Any] = field(default_factory=dict)

    @property
    def sweeps(self) -> list[str]:
        return list(self.sizes)

    def status(self, sweep: str) -> str:
        """The worst verdict of the sweep: diverged, unstable, lazy or pass."""
        found = {v.status for v in self.verdicts if v.sweep == sweep}
        return next((s for s in ("diverged", "unstable", "lazy") if s in found), "pass")

    def verdict(self, sweep: str, role: str) -> RoleVerdict:
        return next(v for v in self.verdicts if v.sweep == sweep and v.role == role)

    def to_json(self) -> str:
        data = asdict(self)
        return json.dumps(data, indent=2, default=lambda x: None if isinstance(x, float) else str(x)) + "\n"

    def save(self, out: str | Path) -> Path:
        """Write coord_check.json into `out`."""
        path = Path(out) / "coord_check.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_json())
        return path


def _rms(x: torch.Tensor) -> float:
    return float(x.detach().float().pow(2).mean().sqrt())


class _Recorder:
    """Forward hooks on the modules owning each role's parameters (registered after the multiplier hooks, so they
    see the multiplied outputs); `capture(example)` -> {role: [outputs]} plus the model's output."""

    def __init__(self, model: Any, plan: Any) -> None:
        modules = named_modules(model)
        owners: dict[str, str] = {}  # a module's role is its weight's (its bias follows it)
        for e in sorted(plan.entries, key=lambda e: not e.name.endswith(".weight")):
            owners.setdefault(e.name.rpartition(".")[0], e.role)
        owners = {m: r for m, r in owners.items() if r != "unembed"}  # measured as the output, after its hook
        self.model, self.out, self.active = model, {}, False
        self.handles = [
            modules[m].register_forward_hook(self._hook(r)) for m, r in owners.items() if m in modules and m
        ]

    def _hook(self, role: str) -> Callable:
        def hook(_module, _inputs, output):
            if self.active and isinstance(output, torch.Tensor):
                self.out.setdefault(role, []).append(output.detach().float().clone())

        return hook

    @torch.no_grad()
    def capture(self, example: Any) -> dict[str, list[torch.Tensor]]:
        was_training = self.model.training
        self.model.eval()
        self.out, self.active = {}, True
        try:
            out = self.model(example)
        finally:
            self.active = False
            self.model.train(was_training)
        logits = getattr(out, "logits", out)
        return {**self.out, OUTPUT: [logits.detach().float().clone()]}

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def _fit(sizes: Sequence[int], values: Sequence[float]) -> tuple[float, float]:
    """(log-log slope, ratio across the range = (max/min)^slope); nan when a value is not positive and finite."""
    if any(not (math.isfinite(v) and v > 0) for v in values):
        return math.nan, math.nan
    slope = float(np.polyfit(np.log(sizes), np.log(values), 1)[0])
    return slope, (max(sizes) / min(sizes)) ** slope


def _judge(
    sweep: str, role: str, sizes: Sequence[int], act: Sequence[float], update: Sequence[float], cfg
) -> RoleVerdict:
    a_slope, a_ratio = _fit(sizes, act)
    u_slope, u_ratio = _fit(sizes, update)
    if math.isnan(a_ratio) or math.isnan(u_ratio):
        status = "diverged"
    elif u_ratio > cfg["growth_max"] or a_ratio > cfg["growth_max"]:
        status = "unstable"
    elif u_ratio < cfg["decay_min"]:
        status = "lazy"
    else:
        status = "pass"
    return RoleVerdict(sweep, role, u_slope, u_ratio, a_slope, a_ratio, status)


@dataclass
class _Probe:
    """What every (width, depth, seed) of one check shares: the model, rules, objective, input and device."""

    user: UserModel
    rules: Any
    objective: Callable[[Any, Any, Run], Any]
    name: str
    steps: int
    hp: dict[str, float]
    head_dim: int | None
    example: Any
    at: Any
    result: ObjectiveCoordCheck

    def trained_rms(self, width: int, depth: int, seed: int) -> dict[str, tuple[float, float]]:
        """The model at (width, depth) bound and planned with `seed` (its binding recorded in the result), the
        objective run on it; per role, the mean RMS of the outputs after training and of their change."""
        model, plan, hooks = self.user.bind(
            self.rules, width, depth, seed, dict(self.hp) or None, self.head_dim, None, self.example
        )
        self.result.bindings.setdefault(f"n={width},L={depth}", binding_record(plan, hooks.sites))
        model.to(self.at)
        recorder = _Recorder(model, plan)
        try:
            h0 = recorder.capture(self.example.to(self.at))
            run = Run({**plan.axes}, seed, self.steps, self.at, dict(self.hp))
            where = f"{self.name} at n={width}, L={depth}, seed={seed}"
            try:
                _loss_value(self.objective(model, plan.optimizer(model), run), where)
            except ScalecError:
                raise
            except Exception as exc:  # the user's loop
                raise CoordCheckError(f"error: {where} raised {one_line(exc)}") from None
            h1 = recorder.capture(self.example.to(self.at))
        finally:
            recorder.remove()
            hooks.remove()
        rms = {}
        for role, outs in h1.items():
            pairs = [(_rms(b), _rms(b - a)) for a, b in zip(h0[role], outs, strict=True)]
            rms[role] = tuple(float(np.mean(x)) for x in zip(*pairs, strict=True))
        return rms


def objective_coord_check(
    build: Callable[[int, int], Any],
    objective: Callable[[Any, Any, Run], Any],
    rules: Any,
    example: Any,
    widths: Sequence[int],
    depths: Sequence[int],
    *,
    base_width: int | None = None,
    base_depth: int | None = None,
    steps: int = 10,
    seeds: int = 3,
    hp: Mapping[str, float] | None = None,
    patterns: Mapping[str, str] | None = None,
    head_dim: int | None = None,
    device: str | None = None,
    growth_max: float = 2.0,
    decay_min: float = 0.3,
    out: str | Path | None = None,
) -> ObjectiveCoordCheck:
    """Run the check (see the module docstring); `rules` is a `scalec.load` result. With `out`, writes
    coord_check.json (sizes, RMS per role, verdicts and the binding of each shape)."""
    if example is None:
        raise CoordCheckError("error: coord_check(objective=...) needs example=<an input the model takes>")
    widths, depths = sorted({int(w) for w in widths}), sorted({int(d) for d in depths})
    axes = {a: xs for a, xs in (("width", widths), ("depth", depths)) if len(xs) > 1}
    if not axes or steps < 1 or seeds < 1:
        raise CoordCheckError("error: coord_check needs two or more widths or depths, steps >= 1 and seeds >= 1")
    user = UserModel(build, patterns)
    user.Error = CoordCheckError
    name = getattr(objective, "__qualname__", "objective")
    at = _device(device)
    thresholds = {"growth_max": growth_max, "decay_min": decay_min}
    result = ObjectiveCoordCheck(str(rules.name), user.label, steps, {}, {}, {}, [])
    probe = _Probe(user, rules, objective, name, steps, dict(hp or {}), head_dim, example, at, result)
    for axis, sizes in axes.items():
        act: dict[str, list[float]] = {}
        update: dict[str, list[float]] = {}
        for size in sizes:
            width = size if axis == "width" else (base_width or min(widths))
            depth = size if axis == "depth" else (base_depth or min(depths))
            per_seed: dict[str, list[tuple[float, float]]] = {}
            for seed in range(seeds):
                for role, pair in probe.trained_rms(width, depth, seed).items():
                    per_seed.setdefault(role, []).append(pair)
            for role, values in per_seed.items():
                act.setdefault(role, []).append(float(np.mean([a for a, _ in values])))
                update.setdefault(role, []).append(float(np.mean([u for _, u in values])))
        result.sizes[axis], result.act[axis], result.update[axis] = list(sizes), act, update
        result.verdicts += [_judge(axis, r, sizes, act[r], update[r], thresholds) for r in act]
    if out is not None:
        result.save(out)
    return result
