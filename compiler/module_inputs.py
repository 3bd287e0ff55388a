"""Shapes and HP values for a generated module, from numbers or number text, checked against its axes, region
and HP domains; calls into the module with its refusals as one-line errors.  Light (no sympy): `scalec.load` and
the runtime planner both coerce their inputs here."""

from __future__ import annotations

import types
from collections.abc import Mapping
from typing import Any

from scalec.compiler.values import parse_number
from scalec.compiler.vocabulary import AXES
from scalec.errors import ScalecError

__all__ = [
    "HParamError",
    "RuleValueError",
    "ShapeValueError",
    "domain_violation",
    "guarded_call",
    "make_hparams",
    "make_shape",
]


class ShapeValueError(ScalecError, ValueError):
    """A shape with a value that is not a positive finite number, or outside the rule's feasible region."""


class HParamError(ScalecError, KeyError):
    """An HP override with an unknown name, a value that is not a number, or a value outside its domain."""

    __str__ = ScalecError.__str__  # one plain line, not KeyError's quoted repr


class RuleValueError(ScalecError, ValueError):
    """A value the rules give outside its domain at this shape and these HPs (the module's DomainError)."""


def domain_violation(name: str, value: float, spec: Any) -> str | None:
    """Why `value` is outside the domain of HP `name` (spec: an HP_SPACE entry of a compiled module, which carries
    its derived domain), e.g. `lambda_ind must satisfy lambda_ind >= 0; got -0.5`; None when it holds."""
    domain = spec.domain
    if domain.holds(value):
        return None
    return f"{name} must satisfy {domain.text}; got {value:g}"


def guarded_call(module: types.ModuleType, fn, *args, **kwargs):
    """Call a function of the generated module, its refusals as ScalecErrors (one `error: ...` line): a shape
    outside the region at these HPs, an HP outside its domain, a value outside its domain."""
    try:
        return fn(*args, **kwargs)
    except module.ShapeError as exc:
        raise ShapeValueError(f"error: {exc}") from None
    except module.HParamError as exc:
        raise HParamError(f"error: {exc}") from None
    except module.DomainError as exc:
        raise RuleValueError(f"error: {exc}") from None


def make_shape(module: types.ModuleType, axes: Mapping[str, float | str], hp: object | None = None) -> object:
    """module.Shape from axis values (numbers or number text such as "2^14"); missing axes take the base values.
    Every value must be a positive finite number and the shape must pass the module's `check_shape` at `hp`
    (default HParams(): the region's constraints may depend on the HPs)."""
    base = module.BASE
    values = {a: getattr(base, a) for a in AXES}
    for axis, raw in axes.items():
        values[axis] = parse_number(raw, f"axis {axis}", positive=True)
    shape = module.Shape(**{a: float(v) for a, v in values.items()})
    guarded_call(module, module.check_shape, shape, hp)
    return shape


def make_hparams(module: types.ModuleType, overrides: Mapping[str, float | str]) -> object:
    """module.HParams with `overrides` by name (`eta`, `lr[mlp.down]`), each a number (or number text) inside
    the HP's domain (derived from the IR, carried by the module)."""
    values: dict[str, float] = {}
    for name, raw in overrides.items():
        if name not in module.HP_SPACE:
            known = ", ".join(k for k in module.HP_SPACE if "[" not in k)
            raise HParamError(
                f"error: unknown hyperparameter '{name}' for {module.NAME}; use {known} or <kind>[<role>] "
                "such as lr[mlp.down]"
            )
        value = parse_number(raw, f"hp {name}")
        reason = domain_violation(name, value, module.HP_SPACE[name])
        if reason is not None:
            raise HParamError(f"error: hp {name}: {reason}")
        values[name] = value
    return module.HParams().replace(**values)
