"""`scalec.load`: a checked, compiled parameterisation with its generated module ready to use.

Light to import: a rule the on-disk cache holds (compiler/rule_cache.py) loads without sympy, lark or jinja2; the
full compile (compiler/pipeline.py) runs on a miss, and `Parameterisation.ir` recompiles on first use."""

from __future__ import annotations

import functools
import sys
import types
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scalec.compiler import rule_cache
from scalec.compiler.module_inputs import (  # noqa: F401 (re-exported)
    HParamError,
    RuleValueError,
    ShapeValueError,
    guarded_call,
    make_hparams,
    make_shape,
)
from scalec.compiler.rule_cache import RuleSummary
from scalec.compiler.values import parse_exact, parse_int
from scalec.compiler.vocabulary import AXES
from scalec.dsl.errors import RuleError
from scalec.errors import ScalecError
from scalec.lazy_module import lazy_module

pipeline = lazy_module("scalec.compiler.pipeline")  # the full compile (sympy, lark, jinja2): only on a rule-cache miss


@dataclass(eq=False)
class Parameterisation:
    """A parameterisation after parsing, resolution, checks and code generation."""

    summary: RuleSummary  # the generated module's source and what `check` and `show` print
    module: types.ModuleType
    fold: bool = False  # make_plan may fold what a model does not apply (runtime/plan/folding_policy.py)
    inputs: tuple[Any, ...] = ()  # (name_or_path, params, base): what `ir` recompiles from
    _compiled: tuple[Any, Any] | None = None  # (ir, report) when known

    @property
    def source(self) -> str:
        return self.summary.source

    @property
    def ir(self):
        """The checked IR (compiled on first use when the rule came from the cache)."""
        return self._compile()[0]

    @property
    def report(self):
        """The checks' report (compiled on first use when the rule came from the cache)."""
        return self._compile()[1]

    def _compile(self) -> tuple[Any, Any]:
        if self._compiled is None:
            ir, report = pipeline.compile_ir(*self.inputs)
            if pipeline.generate(ir) != self.summary.source:  # the IR must be the one this module came from
                raise ScalecError(
                    f"error: rule {self.inputs[0]} changed on disk since it was loaded; load it again (scalec.load)"
                )
            self._compiled = (ir, report)
        return self._compiled

    @property
    def name(self) -> str:
        return self.summary.name

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
        return f"<Parameterisation {self.name} ({' -> '.join(self.summary.lineage)})>"


def import_source(source: str, name: str) -> types.ModuleType:
    """Execute generated source as a fresh module (registered so dataclasses can resolve it)."""
    mod_name = f"scalec_generated_{name.lower()}_{abs(hash(source)) % 10**10}"
    module = types.ModuleType(mod_name)
    module.__file__ = f"<scalec:{name}>"
    sys.modules[mod_name] = module
    exec(compile(source, module.__file__, "exec"), module.__dict__)  # noqa: S102 - our own generated code
    return module


def __getattr__(name: str) -> Any:
    if name == "compile_ir":  # kept importable from here; it lives with the rest of the full compile
        return pipeline.compile_ir
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def rule_summary(
    name_or_path: str | Path,
    params: Mapping[str, str | float] | None = None,
    base: Mapping[str, int] | None = None,
    fold: bool = False,
) -> tuple[RuleSummary, tuple[Any, Any] | None]:
    """(summary, (ir, report) when it was compiled now): from the rule cache when it holds this exact chain, else
    compiled (raising RuleError on the first problem) and stored. Only a rule that passed every check is stored."""
    found = rule_cache.rule_key(name_or_path, params, base, fold)
    if found is not None:
        hit = rule_cache.read(found[0])
        if hit is not None:
            return hit, None
    ir, report = pipeline.compile_ir(name_or_path, params, base)
    summary = pipeline.summarise(ir, report)
    if found is not None and not summary.broken and tuple(zip(ir.paths, ir.sources, strict=True)) == found[1]:
        rule_cache.write(found[0], summary)  # the files parsed are exactly the ones the key hashed
    return summary, (ir, report)


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
    summary, compiled = rule_summary(name_or_path, params, base, fold)
    module = import_source(summary.source, summary.name)
    return Parameterisation(summary, module, fold, (name_or_path, params, base), compiled)
