"""make_plan's inputs as a generated module's own objects: the rule module, a checked Shape and HParams."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from scalec.compiler.module_inputs import make_hparams, make_shape
from scalec.errors import ScalecError
from scalec.runtime.plan.plan_error import PlanError


def module_of(rules: Any) -> Any:
    """The generated module behind a Parameterisation (duck-typed on `.module`) or the module itself."""
    module = getattr(rules, "module", rules)
    if not hasattr(module, "role_hparams") or not hasattr(module, "Shape"):
        raise PlanError(
            f"error: {type(rules).__name__} is not a parameterisation; pass scalec.load('<rule>') or a generated module"
        )
    return module


def shape_axes(module: Any, shape: Any) -> dict[str, Any]:
    """The axis values a caller gave (a dict, or every axis of a Shape), unknown axes refused."""
    if isinstance(shape, Mapping):
        axes = {f.name for f in dataclasses.fields(module.Shape)}
        unknown = sorted(set(shape) - axes)
        if unknown:
            raise PlanError(f"error: unknown axis '{unknown[0]}' in the shape; axes: {', '.join(sorted(axes))}")
        return dict(shape)
    if isinstance(shape, module.Shape):
        return dataclasses.asdict(shape)
    raise PlanError(f"error: shape must be a {module.NAME} Shape or a dict of axis values, not {type(shape).__name__}")


def resolve_shape(module: Any, shape: Any) -> Any:
    """A module.Shape from a Shape or a dict of axis values (missing axes take base values), checked as
    `p.shape` checks it (compiler/module_inputs.make_shape)."""
    axes = shape_axes(module, shape)
    try:
        return make_shape(module, axes)
    except ScalecError as exc:
        raise PlanError(f"error: shape: {str(exc).removeprefix('error: ')}") from None


def resolve_hparams(module: Any, hp: Any) -> Any:
    """module.HParams from None (defaults), an HParams, or a dict of HP values by name, checked as `p.hparams`
    checks them (compiler/module_inputs.make_hparams)."""
    if hp is None or isinstance(hp, module.HParams):
        return hp
    if not isinstance(hp, Mapping):
        raise PlanError(f"error: hp must be HParams or a dict of HP values, not {type(hp).__name__}")
    try:
        return make_hparams(module, hp)
    except ScalecError as exc:
        raise PlanError(str(exc)) from None


def check_region(module: Any, shape: Any, hp: Any) -> None:
    """Refuse a shape outside the rule's region at these HPs (Complete(d)P: steps >= S0 * (1 - beta1))."""
    if hp is None:
        return
    try:
        module.check_shape(shape, hp)
    except module.ShapeError as exc:
        raise PlanError(f"error: shape: {exc}") from None
    except ValueError as exc:  # the module's HParamError: an HP outside its domain
        raise PlanError(f"error: {exc}") from None


def role_values(module: Any, key: tuple, shape: Any, hp: Any) -> Any:
    """A role's values (the module's RoleHParams) for a tensor key (role, fan_in, fan_out, block or None)."""
    role, fan_in, fan_out, layer = key
    if not hasattr(module, "LAYERED_ROLES"):  # a module generated before per-tensor symbols
        return module.role_hparams(role, shape, hp)
    try:
        return module.role_hparams(role, shape, hp, fan_in=fan_in or None, fan_out=fan_out or None, layer=layer)
    except ValueError as exc:  # the module's ShapeError, HParamError, DomainError: a value outside its domain
        raise PlanError(f"error: {exc}") from None
