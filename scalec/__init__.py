"""scalec: a declarative scaling-rule compiler for neural-network parameterisations.

Public API: `load` a rule file, then apply it with `scalec.runtime.make_plan`.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "load"]


def load(name_or_path, params=None, base=None, fold=False):
    """Load a bundled rule (`"completedp"`) or a `.scale` file: checked, compiled and imported.

    params: overrides of the file's `param`s ({"alpha": "1/2"}); base: base-shape overrides ({"n": 64});
    fold: let make_plan fold the forward multipliers a model does not apply into init/LR (exact, or refused).
    """
    from scalec.compiler.parameterisation import load as _load

    return _load(name_or_path, params=params, base=base, fold=fold)
