"""The study faces of `scalec`: `coord_check`, `sweep`, `search` and `transfer` of a rule on the bundled GPT, on
your model (`build=`) or with your own training loop (`objective=`). They import torch: `scalec` loads this module
on the first use of one of them."""

from __future__ import annotations

from pathlib import Path

from scalec.compiler.parameterisation import load
from scalec.runtime.studies import studies
from scalec.runtime.studies.coord_check import coord_check as _coord_check
from scalec.runtime.studies.coord_subject import ModelSubject, record_binding
from scalec.runtime.studies.objective_coord_check import objective_coord_check

__all__ = ["coord_check", "search", "sweep", "transfer"]


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
        rules = load(rule, options.pop("params", None)) if isinstance(rule, str) else rule
        return objective_coord_check(
            build or factory, objective, rules, example, widths, depths, patterns=patterns, **options
        )
    build = build or factory
    result = _coord_check(build, rule, widths=widths, depths=depths, patterns=patterns, **options)
    if build is not None and options.get("out") is not None:  # coord_check.json records the binding at each shape
        rules = load(rule, options.get("params")) if isinstance(rule, str) else rule
        record_binding(Path(options["out"]) / "coord_check.json", ModelSubject(build, patterns), rules, result.config)
    return result


def sweep(rule, hp, **options):
    """Sweep `rule`'s HPs (`hp`: {"eta": [2**-8, 2**-6]} or ["eta=2^-10..2^-4:7"]), each run kept in `out` (a rerun
    resumes); `build=` your model, `objective=` your loop; see `scalec.runtime.studies.studies.sweep`."""
    return studies.sweep(rule, hp, **options)


def search(rule, space="eta,lr[*]", **options):
    """Optuna search of `rule`'s HPs; `build=`, `objective=` as `sweep`; see `scalec.runtime.studies.studies.search`."""
    return studies.search(rule, space, **options)


def transfer(rule, hp, base, target, **options):
    """Does the best HP at shape `base` ({"width": 64}) stay best at `target` ({"width": 256})? `build=`,
    `objective=` as `sweep`; see `scalec.runtime.studies.studies.transfer`."""
    return studies.transfer(rule, hp, base, target, **options)
