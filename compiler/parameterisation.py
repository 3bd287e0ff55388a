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
from scalec.compiler.ir import ParameterisationIR, Quantity
from scalec.compiler.loader import load_chain
from scalec.compiler.module_inputs import HParamError, ShapeValueError, make_hparams, make_shape  # noqa: F401 (re-exported)
from scalec.compiler.resolve import resolve
from scalec.compiler.vocabulary import AXES
from scalec.dsl.errors import RuleError
from scalec.parsing import parse_exact, parse_int


@dataclass(eq=False)
class Parameterisation:
    """A parameterisation after parsing, resolution, checks and code generation."""

    ir: ParameterisationIR
    report: CheckReport
    source: str
    module: types.ModuleType
    fold: bool = False  # make_plan may fold what a model does not apply (runtime/plan/folding_policy.py)

    @property
    def name(self) -> str:
        return self.ir.name

    def shape(self, **axes: float | str):
        """A checked module.Shape; axes not given take their base values. Raises ShapeValueError (a ValueError)
        for a value that is not a positive finite number or a shape outside the rule's feasible region."""
        unknown = set(axes) - set(AXES)
        if unknown:
            raise RuleError(
                self.ir.header_loc,
                f"unknown axis {', '.join(sorted(unknown))}",
                f"axes: {', '.join(AXES)}",
                self.ir.sources[-1],
            )
        return make_shape(self.module, axes)

    def hparams(self, **overrides: float | str):
        """module.HParams with defaults from the file, `overrides` by name (`eta`, `lr[mlp.down]`); an unknown
        name or a value outside the HP's domain raises HParamError (a KeyError)."""
        return make_hparams(self.module, overrides)

    def role_hparams(self, role: str, shape, hp=None):
        return self.module.role_hparams(role, shape, hp)

    def sites(self, shape, hp=None):
        """Forward multipliers at `shape`; `hp` is accepted for symmetry with `role_hparams` (sites depend on the
        shape only)."""
        return self.module.sites(shape)

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
    """Parse, resolve and check; raises RuleError on the first problem."""
    ir = resolve(load_chain(name_or_path), params)
    if base:
        _apply_base(ir, base)
    return ir, run_checks(ir)


def load(
    name_or_path: str | Path,
    params: Mapping[str, str | float] | None = None,
    base: Mapping[str, float] | None = None,
    fold: bool = False,
) -> Parameterisation:
    """Load a bundled rule (`"completedp"`) or a `.scale` file: checked, compiled and imported.

    `fold=True` lets `make_plan` fold each forward multiplier the model does not apply into init/LR (exact under
    each role's optimizer's abc-symmetry; what cannot be folded exactly is refused). The module itself stays unfolded.
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
