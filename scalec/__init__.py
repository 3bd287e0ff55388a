"""scalec: a declarative scaling-rule compiler for neural-network parameterisations.

Public API: `load` a rule; `optimizer(model, rule, shape, hp)` plans, initialises and returns the optimizer of any
PyTorch model (its plan is `opt.scalec_plan`; `plan(...)` plans without them); `apply_multipliers(model, plan)`
hooks in the forward multipliers the model does not apply; `coord_check` checks a rule on your own model;
`desiderata` and `equivalence` analyse rules. Names load their module on first use: `import scalec` stays light.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from scalec.errors import ScalecError

__version__ = "0.1.0"

# Your model in one line (scalec/api.py, runtime/multipliers.py).
_API_EXPORTS = {
    "plan": "scalec.api",
    "optimizer": "scalec.api",
    "apply_multipliers": "scalec.runtime.multipliers",
    "MultiplierHandles": "scalec.runtime.multipliers",
    "HOOKABLE": "scalec.runtime.multipliers",
    "Plan": "scalec.runtime",
    "PlanError": "scalec.runtime",
    "BindingError": "scalec.runtime",
    "desiderata": "scalec.compiler.analysis",
    "equivalence": "scalec.compiler.analysis",
}
_EXPORTS = {**_API_EXPORTS}

__all__ = ["ScalecError", "__version__", "coord_check", "load", *_API_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'scalec' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def load(name_or_path, params=None, base=None, fold=False):
    """Load a bundled rule (`"completedp"`) or a `.scale` file: checked, compiled and imported.

    params: overrides of the file's `param`s ({"alpha": "1/2"}); base: base-shape overrides ({"n": 64});
    fold: let make_plan fold the forward multipliers a model does not apply into init/LR (exact, or refused).
    """
    from scalec.compiler.parameterisation import load as _load

    return _load(name_or_path, params=params, base=base, fold=fold)


def coord_check(factory, rule, widths=(64, 128, 256, 512), depths=(2, 4, 8, 16), patterns=None, **options):
    """Coordinate check of `rule` on the models `factory(width, depth)` builds (byte ids -> logits); see
    `scalec.runtime.studies.coord_check.coord_check` for `options` (steps, seeds, corpus, out, ...)."""
    from scalec.runtime.studies.coord_check import coord_check as _coord_check

    return _coord_check(factory, rule, widths=widths, depths=depths, patterns=patterns, **options)
