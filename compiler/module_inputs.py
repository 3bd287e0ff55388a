"""Shapes and HP values for a generated module, from numbers or number text, checked against its axes, region
and HP domains.  Light (no sympy): `scalec.load` and the runtime planner both coerce their inputs here."""

from __future__ import annotations

import types
from collections.abc import Mapping

from scalec.compiler.hp_domains import domain_violation
from scalec.compiler.vocabulary import AXES
from scalec.errors import ScalecError
from scalec.parsing import parse_number

__all__ = ["HParamError", "ShapeValueError", "make_hparams", "make_shape"]


class ShapeValueError(ScalecError, ValueError):
    """A shape with a value that is not a positive finite number, or outside the rule's feasible region."""


class HParamError(ScalecError, KeyError):
    """An HP override with an unknown name, a value that is not a number, or a value outside its domain."""

    __str__ = ScalecError.__str__  # one plain line, not KeyError's quoted repr


def make_shape(module: types.ModuleType, axes: Mapping[str, float | str]) -> object:
    """module.Shape from axis values (numbers or number text such as "2^14"); missing axes take the base values.
    Every value must be a positive finite number and the shape must pass the module's `check_shape`."""
    base = module.BASE
    values = {a: getattr(base, a) for a in AXES}
    for axis, raw in axes.items():
        values[axis] = parse_number(raw, f"axis {axis}", positive=True)
    shape = module.Shape(**{a: float(v) for a, v in values.items()})
    try:
        module.check_shape(shape)
    except ValueError as exc:
        raise ShapeValueError(f"error: {exc}") from None
    return shape


def make_hparams(module: types.ModuleType, overrides: Mapping[str, float | str]) -> object:
    """module.HParams with `overrides` by name (`eta`, `lr[mlp.down]`), each a number (or number text) inside
    the HP's domain (compiler/hp_domains.py)."""
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
