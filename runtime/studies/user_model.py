"""Your model (and your training function) in a study: named `FILE.py:FUNC` on the command line or passed as Python
callables; `UserModel` builds `FUNC(width, depth)`, binds its parameters to the rule's roles, plans, initialises it
and installs the forward multipliers the model does not apply itself (hooks), and records that binding.

A FILE.py is imported as Python runs a script: its folder is importable, so sibling modules import. Runs are keyed
by the file's content hash (`model_sha256`, `objective_sha256`): an edited file is a new run, never a stale reuse.
Callables given to the Python API are keyed by their module, name and source, and live only in this process.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import json
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from scalec.errors import ScalecError
from scalec.runtime.plan.model_params import unique_parameters, unwrap
from scalec.runtime.plan.model_shape import declared_head_dim
from scalec.runtime.plan.multiplier_hooks import HOOK_ROLE_MULTS, HOOK_SITES, install
from scalec.runtime.plan.planner import make_plan
from scalec.runtime.plan.presets import detect_preset

PYTHON_REF = "python:"  # a callable handed to the Python API, by module and name (this process only)
_CALLABLES: dict[str, Callable] = {}


class UserModelError(ScalecError):
    """Your model or training function cannot be loaded, built, bound or run (the message names where)."""


def one_line(exc: BaseException) -> str:
    """`Type: first line of the message` of an exception raised by the user's code."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def split_spec(spec: str, option: str) -> tuple[Path, str]:
    """`FILE.py:FUNC` -> (path, FUNC), or a one-line error naming the option."""
    path_text, sep, func = spec.rpartition(":")
    if not sep or not path_text or not func:
        raise UserModelError(f"error: {option} '{spec}': expected FILE.py:FUNC, e.g. {option} my_model.py:build")
    path = Path(path_text)
    if not path.is_file():
        raise UserModelError(f"error: {option} '{spec}': no such file {path}")
    return path, func


def load_function(spec: str, option: str = "--model", signature: str = "(width, depth)") -> Callable:
    """The function FUNC defined in FILE.py, imported as a fresh module with the file's folder importable."""
    path, func = split_spec(spec, option)
    folder = str(path.resolve().parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)  # as `python FILE.py` would: sibling modules import
    name = f"scalec_user_{hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]}"
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise UserModelError(f"error: {option} '{spec}': {path} is not a Python file")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    try:
        module_spec.loader.exec_module(module)
    except Exception as exc:  # the user's file: report its failure in one line
        raise UserModelError(f"error: importing {path} raised {one_line(exc)}") from None
    function = getattr(module, func, None)
    if not callable(function):
        raise UserModelError(f"error: {option} '{spec}': {path} defines no function {func}{signature}")
    return function


def file_sha256(path: str | Path) -> str:
    """The hex SHA-256 of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def callable_ref(function: Callable, option: str) -> tuple[str, str]:
    """(reference, sha256) of a callable handed to the Python API; the reference resolves in this process only."""
    if isinstance(function, str):
        return function, file_sha256(split_spec(function, option)[0])
    if not callable(function):
        raise UserModelError(f"error: {option}={function!r} is neither a callable nor 'FILE.py:FUNC'")
    name = f"{getattr(function, '__module__', '?')}.{getattr(function, '__qualname__', type(function).__name__)}"
    try:
        source = inspect.getsource(function)
    except (OSError, TypeError):
        source = repr(getattr(function, "__code__", function))
    ref = PYTHON_REF + name
    _CALLABLES[ref] = function
    return ref, hashlib.sha256(source.encode()).hexdigest()


def resolve(ref: str, option: str, signature: str) -> Callable:
    """The callable a run config names: `FILE.py:FUNC`, or a `python:` callable registered in this process."""
    if ref.startswith(PYTHON_REF):
        if ref not in _CALLABLES:
            raise UserModelError(
                f"error: {option} {ref[len(PYTHON_REF) :]} was handed to the Python API in another process; worker "
                f"processes need it as 'FILE.py:FUNC'"
            )
        return _CALLABLES[ref]
    return load_function(ref, option, signature)


def check_unchanged(ref: str | None, sha256: str | None, option: str) -> None:
    """Refuse a FILE.py whose content changed since its runs were keyed (the run would be mislabelled)."""
    if ref and sha256 and not ref.startswith(PYTHON_REF):
        path = Path(ref.rpartition(":")[0])
        if path.is_file() and file_sha256(path) != sha256:
            raise UserModelError(
                f"error: {option} {ref}: the file changed since this run was keyed by its content; rerun the "
                "command to key the runs on the new content"
            )


def load_roles(path: str | Path) -> dict[str, str]:
    """ROLES.json: a JSON object {glob: role} (as make_plan's `patterns=`)."""
    try:
        data = json.loads(Path(path).read_text())
    except OSError as exc:
        raise UserModelError(f"error: --roles {path}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise UserModelError(f"error: --roles {path}: not JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise UserModelError(
            f'error: --roles {path}: expected an object of glob -> role, e.g. {{"blocks.*.mlp.down.weight": '
            '"mlp.down"}'
        )
    return data


def model_settings(model: Any, roles: Any, objective: Any) -> dict[str, Any]:
    """The run settings (TrainConfig names) of a --model / --roles / --objective, loaded now so that a bad file
    is one line before any run: {model, model_sha256, roles, objective, objective_sha256} (empty for none).
    `model` and `objective` are `FILE.py:FUNC` or callables; `roles` a ROLES.json path or a {glob: role} dict."""
    if model is None:
        if roles is not None or objective is not None:
            which = "--roles" if roles is not None else "--objective"
            raise UserModelError(f"error: {which} applies to --model FILE.py:FUNC; pass --model too")
        return {}
    out: dict[str, Any] = {}
    if isinstance(model, str):
        load_function(model, "--model", "(width, depth)")
    out["model"], out["model_sha256"] = callable_ref(model, "--model")
    if roles is not None:
        out["roles"] = dict(roles) if isinstance(roles, Mapping) else load_roles(roles)
    if objective is not None:
        if isinstance(objective, str):
            load_function(objective, "--objective", "(model, optimizer, run)")
        out["objective"], out["objective_sha256"] = callable_ref(objective, "--objective")
    return out


HOOK_NAMES = {
    "logits": "output.mult x mult[unembed]",
    "embed": "embed.mult x mult[embed]",
    "attn": "residual.attn",
    "mlp": "residual.mlp",
}


def hook_factors(plan: Any) -> dict[str, float]:
    """The factor each hook applies (as `multiplier_hooks.install` computes them): logits, embed, attn, mlp."""
    m = plan.multipliers
    return {
        "logits": m.get("output.mult", 1.0) * m.get("mult[unembed]", 1.0),
        "embed": m.get("embed.mult", 1.0) * m.get("mult[embed]", 1.0),
        "attn": m.get("residual.attn", 1.0),
        "mlp": m.get("residual.mlp", 1.0),
    }


def binding_record(plan: Any, sites: Any = None) -> dict[str, Any]:
    """What a plan did to a model, as plain data: parameter name -> role, how the roles were found, each fold with
    its factor, and the forward multipliers hooks apply (site -> factor and the modules hooked; `sites`: the
    hooks' ModelSites, or None to leave the modules out)."""
    hooks: dict[str, Any] = {}
    for what, factor in hook_factors(plan).items():
        if factor == 1.0:
            continue
        hooks[HOOK_NAMES[what]] = {"factor": factor}
        if sites is not None:
            owners = (
                ["<model output>"]
                if what == "logits"
                else list(sites.embed if what == "embed" else sites.branches(what))
            )
            hooks[HOOK_NAMES[what]]["modules"] = owners
    return {
        "parameters": {e.name: e.role for e in plan.entries},
        "source": plan.preset,
        "folds": list(plan.folded),
        "hooks": hooks,
    }


class UserModel:
    """A model factory `FUNC(width, depth) -> nn.Module`, bound by `patterns` ({glob: role}) or a preset that
    recognises it, else by inference (a second instance at twice the width, and the module graph)."""

    Error: type[ScalecError] = UserModelError

    def __init__(self, factory: Callable[[int, int], Any], patterns: Mapping[str, str] | None = None, label=None):
        self.factory = factory
        self.patterns = dict(patterns) if patterns else None
        self.label = label or getattr(factory, "__name__", "model")

    def make(self, width: int, depth: int, meta: bool = False) -> Any:
        """FUNC(width, depth), its failures as one-line errors."""
        import torch
        from torch import nn

        try:
            if meta:
                with torch.device("meta"):
                    model = self.factory(width, depth)
            else:
                model = self.factory(width, depth)
        except Exception as exc:  # the user's code: any failure becomes one line naming the call
            raise self.Error(f"error: {self.label}({width}, {depth}) raised {one_line(exc)}") from None
        if not isinstance(model, nn.Module):
            raise self.Error(
                f"error: {self.label}({width}, {depth}) returned {type(model).__name__}, not a torch nn.Module"
            )
        return model

    def binding(self, model: Any, width: int, depth: int) -> dict[str, Any]:
        """make_plan's preset / patterns / base_model: patterns when given, else a preset that recognises the
        model, else inference (a second instance at twice the width, and the module graph on the probe)."""
        if self.patterns:
            return {"preset": "auto", "patterns": self.patterns}
        if detect_preset(unwrap(model), [n for n, _, _ in unique_parameters(model)]) is not None:
            return {"preset": "auto"}
        return {"preset": "infer", "base_model": self.make(2 * width, depth, meta=True)}

    def plan(self, rules: Any, width: int, depth: int, hp: Any, head_dim: int | None = None, axes=None) -> Any:
        """The plan of FUNC(width, depth) built on the meta device (no memory, nothing initialised), with the
        multipliers hooks apply left to them, the rest folded where exact."""
        model = self.make(width, depth, meta=True)
        return model, self._plan_of(model, rules, width, depth, hp, head_dim, axes)

    def _plan_of(
        self, model: Any, rules: Any, width: int, depth: int, hp: Any, head_dim: int | None, axes: Any, example=None
    ) -> Any:
        """make_plan of the built `model` at (width, depth, `axes`): the hooks apply the output, embedding and
        residual multipliers, the rest (the attention scale into the queries, per-role multipliers) is folded where
        exact and refused otherwise; every refusal is one line naming the model."""
        d_head = head_dim or head_dim_of(model)
        shape = {**(axes or {}), "n": float(width), "L": float(depth), **({"d_head": float(d_head)} if d_head else {})}
        try:
            plan = make_plan(
                rules,
                model,
                shape,
                hp,
                applied_sites=(*HOOK_SITES, *HOOK_ROLE_MULTS),
                fold=True,
                example_input=example,
                **self.binding(model, width, depth),
            )
        except ScalecError as exc:
            raise self.Error(f"error: {self.label}({width}, {depth}): {str(exc).removeprefix('error: ')}") from None
        return plan

    def bind(
        self,
        rules: Any,
        width: int,
        depth: int,
        seed: int,
        hp: Any,
        head_dim: int | None = None,
        axes: Mapping[str, float] | None = None,
        example: Any = None,
        generator: Any = None,
        before_hooks: Callable[[Any, Any], None] | None = None,
    ) -> tuple[Any, Any, Any]:
        """(model, plan, hooks): FUNC(width, depth) built with `seed`, planned at (width, depth, `axes`),
        initialised, with the plan's remaining forward multipliers hooked. `example`: input ids (or any input)
        the module graph and the residual-hook proof run on; `before_hooks(model, plan)` checks more first."""
        import torch

        torch.manual_seed(seed)
        model = self.make(width, depth)
        label = f"{self.label}({width}, {depth})"
        if example is not None:  # the forward's own failure first, not as an undecided binding
            try:
                with torch.no_grad():
                    model(example)
            except Exception as exc:  # the user's forward
                raise self.Error(f"error: {label} forward raised {one_line(exc)}") from None
        try:  # every refusal names the model it refused
            plan = self._plan_of(model, rules, width, depth, hp, head_dim, axes, example)
            torch.manual_seed(seed)
            plan.init_(model, generator=generator)
            if before_hooks is not None:
                before_hooks(model, plan)
            hooks = install(model, plan, example=example)
        except self.Error:
            raise
        except ScalecError as exc:
            raise self.Error(f"error: {label}: {str(exc).removeprefix('error: ')}") from None
        return model, plan, hooks


def head_dim_of(model: Any) -> int | None:
    """The attention head dimension a model declares (its config, or a `head_dim` attribute; the planner's one
    reader, runtime/plan/model_shape.declared_head_dim), None when it declares none."""
    declared = declared_head_dim(model)
    return None if declared is None else int(declared[0])


BYTE_VOCAB = 256  # the bundled data and coordinate checks feed byte ids


def byte_logits(
    out: Any, idx: Any, label: str, error: type[ScalecError] = UserModelError, feeder: str = "the bundled data are"
) -> Any:
    """The logits of a model output, checked to be [batch, seq, V >= 256] (one line naming the model otherwise, as
    `error`; `feeder` says what hands the model byte ids)."""
    import torch

    logits = getattr(out, "logits", out)
    batch, seq = idx.shape
    if not isinstance(logits, torch.Tensor) or logits.dim() != 3 or tuple(logits.shape[:2]) != (batch, seq):
        got = list(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise error(
            f"error: {label} returned {got} for input ids [{batch}, {seq}]; the model must return logits "
            "[batch, seq, V] or an object with .logits"
        )
    if logits.shape[-1] < BYTE_VOCAB:
        raise error(
            f"error: {label} has a vocabulary of {logits.shape[-1]}; {feeder} byte ids, so build it with "
            f"V >= {BYTE_VOCAB}"
        )
    return logits
