"""scalec: a declarative scaling-rule compiler for neural-network parameterisations.

Public API: `load` a rule; `optimizer(model, rule, shape, hp)` plans, initialises and returns the optimizer of any
PyTorch model (its plan is `opt.scalec_plan`; `plan(...)` plans without them); `apply_multipliers(model, plan)`
hooks in the forward multipliers the model does not apply; `coord_check` checks a rule on your own model;
`sweep`, `search` and `transfer` tune a rule's HPs on the bundled GPT, on your model (`build=`) and with your own
training loop (`objective=`); `desiderata` and `equivalence` analyse rules. Names load their module on first use:
`import scalec` stays light.
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

__all__ = ["ScalecError", "__version__", "coord_check", "load", "search", "sweep", "transfer", *_API_EXPORTS]


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


def coord_check(
    factory=None,
    rule=None,
    widths=(64, 128, 256, 512),
    depths=(2, 4, 8, 16),
    patterns=None,
    *,
    build=None,
    objective=None,
    example=None,
    **options,
):
    """Coordinate check of `rule` on the models `build(width, depth)` (or `factory`) builds: byte-level language
    models trained by the bundled loop (see `scalec.runtime.studies.coord_check.coord_check` for `options`: steps,
    seeds, corpus, out, ...), or any model trained by your `objective(model, optimizer, run)` and probed on `example`
    (see `scalec.runtime.studies.objective_coord_check`)."""
    if build is not None and factory is not None:
        raise TypeError("coord_check: give build= or factory, not both")
    if objective is not None:
        from scalec.runtime.studies.objective_coord_check import objective_coord_check

        rules = load(rule, options.pop("params", None)) if isinstance(rule, str) else rule
        return objective_coord_check(
            build or factory, objective, rules, example, widths, depths, patterns=patterns, **options
        )
    from scalec.runtime.studies.coord_check import coord_check as _coord_check

    build = build or factory
    result = _coord_check(build, rule, widths=widths, depths=depths, patterns=patterns, **options)
    if build is not None and options.get("out") is not None:  # coord_check.json records the binding at each shape
        from pathlib import Path

        from scalec.runtime.studies.coord_subject import ModelSubject, record_binding

        rules = load(rule, options.get("params")) if isinstance(rule, str) else rule
        record_binding(Path(options["out"]) / "coord_check.json", ModelSubject(build, patterns), rules, result.config)
    return result


def sweep(rule, hp, **options):
    """Sweep `rule`'s HPs (`hp`: {"eta": [2**-8, 2**-6]} or ["eta=2^-10..2^-4:7"]), each run kept in `out` (a rerun
    resumes); `build=` your model, `objective=` your loop; see `scalec.runtime.studies.studies.sweep`."""
    from scalec.runtime.studies.studies import sweep as _sweep

    return _sweep(rule, hp, **options)


def search(rule, space="eta,lr[*]", **options):
    """Optuna search of `rule`'s HPs; `build=`, `objective=` as `sweep`; see `scalec.runtime.studies.studies.search`."""
    from scalec.runtime.studies.studies import search as _search

    return _search(rule, space, **options)


def transfer(rule, hp, base, target, **options):
    """Does the best HP at shape `base` ({"width": 64}) stay best at `target` ({"width": 256})? `build=`,
    `objective=` as `sweep`; see `scalec.runtime.studies.studies.transfer`."""
    from scalec.runtime.studies.studies import transfer as _transfer

    return _transfer(rule, hp, base, target, **options)
