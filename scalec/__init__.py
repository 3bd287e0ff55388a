"""scalec: a declarative scaling-rule compiler for neural-network parameterisations.

Public API: `load` a rule file, then apply it with `scalec.runtime.make_plan`; `coord_check` runs an empirical
coordinate check of a rule on your own model.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "coord_check", "load"]


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
