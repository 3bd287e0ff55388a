"""`scalec.load`: a checked, compiled parameterisation with its generated module ready to use."""

from __future__ import annotations

import functools
import sys
import types
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import sympy

from scalec.compiler.checks import CheckReport, run_checks
from scalec.compiler.codegen import generate
from scalec.compiler.hp_domains import derive_hp_domains, domain_violation
from scalec.compiler.ir import ParameterisationIR, Quantity
from scalec.compiler.loader import load_chain
from scalec.compiler.resolve import resolve
from scalec.compiler.vocabulary import AXES
from scalec.dsl.errors import RuleError
from scalec.errors import ScalecError
from scalec.parsing import parse_exact, parse_int, parse_number


class ShapeValueError(ScalecError, ValueError):
    """A shape with a value that is not a positive finite number, or outside the rule's feasible region."""


class HParamError(ScalecError, KeyError):
    """An HP override with an unknown name, a value that is not a number, or a value outside its domain."""

    __str__ = ScalecError.__str__  # one plain line, not KeyError's quoted repr


class RuleValueError(ScalecError, ValueError):
    """A value the rules give outside its domain at this shape and these HPs (the module's DomainError)."""


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


@dataclass(eq=False)
class Parameterisation:
    """A parameterisation after parsing, resolution, checks and code generation."""

    ir: ParameterisationIR
    report: CheckReport
    source: str
    module: types.ModuleType
    fold: bool = False  # make_plan may fold the forward multipliers a model does not apply (compiler/folding.py)

    @property
    def name(self) -> str:
        return self.ir.name

    def shape(self, hp: object | None = None, **axes: float | str):
        """A checked module.Shape; axes not given take their base values. Raises ShapeValueError (a ValueError)
        for a value that is not a positive finite number or a shape outside the rule's feasible region at `hp`
        (HParams, default the file's: the region may depend on the HPs; role_hparams checks it again)."""
        unknown = set(axes) - set(AXES)
        if unknown:
            raise RuleError(
                self.ir.header_loc,
                f"unknown axis {', '.join(sorted(unknown))}",
                f"axes: {', '.join(AXES)}",
                self.ir.sources[-1],
            )
        return make_shape(self.module, axes, hp)

    def hparams(self, **overrides: float | str):
        """module.HParams with defaults from the file, `overrides` by name (`eta`, `lr[mlp.down]`); an unknown
        name or a value outside the HP's domain raises HParamError (a KeyError)."""
        return make_hparams(self.module, overrides)

    def role_hparams(self, role: str, shape, hp=None, **tensor):
        """One role's values at `shape` (module.RoleHParams; `tensor`: fan_in, fan_out, layer); every value lies
        in its domain, else ShapeValueError (the shape leaves the region at these HPs), HParamError or
        RuleValueError, each one line."""
        if role not in self.module.ROLES:
            raise HParamError(f"error: {self.name} has no role '{role}'; roles: {', '.join(self.module.ROLES)}")
        return guarded_call(self.module, self.module.role_hparams, role, shape, hp, **tensor)

    def sites(self, shape, hp=None):
        """Forward multipliers at `shape` (they depend on the shape only; `hp` decides the feasible region); refused
        as `role_hparams` refuses."""
        return guarded_call(self.module, self.module.sites, shape, hp)

    def __repr__(self) -> str:
        return f"<Parameterisation {self.name} ({' -> '.join(self.ir.lineage)})>"


def import_source(source: str, name: str) -> types.ModuleType:
    """Execute generated source as a fresh module (registered so dataclasses can resolve it)."""
    mod_name = f"scalec_generated_{name.lower()}_{abs(hash(source)) % 10**10}"
    module = types.ModuleType(mod_name)
    module.__file__ = f"<scalec:{name}>"
    sys.modules[mod_name] = module
    exec(compile(source, module.__file__, "exec"), module.__dict__)  # noqa: S102 - our own generated code
    return module


def _apply_base(ir: ParameterisationIR, base: Mapping[str, float]) -> None:
    for axis, raw in base.items():
        if axis not in AXES:
            raise RuleError(
                ir.header_loc, f"unknown axis '{axis}' in base override", f"axes: {', '.join(AXES)}", ir.sources[-1]
            )
        q = ir.axes[axis]
        value = sympy.Integer(parse_int(raw, f"base {axis}"))
        if q.low is not None and not (q.low <= value <= q.high):
            raise RuleError(
                q.loc,
                f"base {axis}={raw} is outside the range [{q.low}, {q.high}] the file declares",
                "choose a base inside the range",
                ir.sources[ir.paths.index(q.loc.path)] if q.loc.path in ir.paths else None,
            )
        ir.axes[axis] = Quantity(axis, value, q.low, q.high, None, q.loc)


def compile_ir(
    name_or_path: str | Path, params: Mapping[str, str | float] | None = None, base: Mapping[str, float] | None = None
) -> tuple[ParameterisationIR, CheckReport]:
    """Parse, resolve and check (the HP domains too: one an HP cannot satisfy is an error); raises RuleError on the
    first problem."""
    ir = resolve(load_chain(name_or_path), params)
    if base:
        _apply_base(ir, base)
    report = run_checks(ir)
    derive_hp_domains(ir)
    return ir, report


def load(
    name_or_path: str | Path,
    params: Mapping[str, str | float] | None = None,
    base: Mapping[str, float] | None = None,
    fold: bool = False,
) -> Parameterisation:
    """Load a bundled rule (`"completedp"`) or a `.scale` file: checked, compiled and imported.

    `fold=True` lets `make_plan` fold each forward multiplier the model does not apply into init/LR (exact under
    the Adam abc-symmetry; what cannot be folded exactly is refused). The module itself stays unfolded.
    """
    params = {name: str(parse_exact(value, f"param {name}")) for name, value in (params or {}).items()}
    base = {axis: parse_int(value, f"base {axis}") for axis, value in (base or {}).items()}
    key = (str(name_or_path), tuple(sorted(params.items())), tuple(sorted(base.items())), fold)
    path = Path(str(name_or_path))
    if path.is_file():
        key = key + (path.stat().st_mtime_ns,)
    return _load_cached(key)


@functools.lru_cache(maxsize=64)
def _load_cached(key) -> Parameterisation:
    name_or_path, params, base, fold = key[0], dict(key[1]), dict(key[2]), key[3]
    ir, report = compile_ir(name_or_path, params, base)
    source = generate(ir)
    return Parameterisation(ir, report, source, import_source(source, ir.name), fold)
