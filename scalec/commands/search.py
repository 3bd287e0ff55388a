"""`scalec search RULE ...`: Optuna study (TPE, CMA-ES, random, trust-region) over per-module multipliers and
global HPs; several workers, on one machine or many, share the study through its storage."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer

from scalec.cli_support import console, guarded
from scalec.commands._options import RuleArg, StudyOptions, study_options
from scalec.commands._progress import StudyProgress
from scalec.lazy_module import lazy_module
from scalec.runtime.studies.search_settings import SearchError

# Modules that import torch load when the command runs, not for `--help` (which needs only the options).
searches = lazy_module("scalec.runtime.studies.search")
studies = lazy_module("scalec.runtime.studies.studies")
sweeps = lazy_module("scalec.runtime.studies.sweep")


def register(app: typer.Typer) -> None:
    """Add `search` to the CLI."""

    @app.command("search")
    @guarded
    @study_options(seed=(Annotated[int, typer.Option(help="Training seed of every trial.")], 0))
    def search_cmd(
        rule: RuleArg,
        space: Annotated[
            str,
            typer.Option(
                help="Searched HPs: comma-separated names or globs over the rule's "
                "HP_SPACE, e.g. 'eta,lr[*]' (multipliers of roles the model has)."
            ),
        ] = "eta,lr[*]",
        hp: Annotated[
            list[str] | None,
            typer.Option(help="Range override NAME=LO..HI (adds NAME to the space) or fixed value NAME=V."),
        ] = None,
        sampler: Annotated[str, typer.Option(help="tpe | cmaes | random | trust-region.")] = "tpe",
        trials: Annotated[
            int, typer.Option(help="COMPLETE trials the study should hold (shared by all workers).")
        ] = 32,
        storage: Annotated[
            str | None,
            typer.Option(
                help="Optuna storage: default <out>/study.journal "
                "(JournalStorage file); an RDB URL such as "
                "postgresql://user@host/db or sqlite:///study.db shares the "
                "study across machines."
            ),
        ] = None,
        study: Annotated[
            str | None,
            typer.Option(
                help="Study name (default: derived from rule, shape and space; workers joining one study must agree)."
            ),
        ] = None,
        workers: Annotated[int, typer.Option(help="Worker processes on this machine.")] = 1,
        out: Annotated[Path, typer.Option(help="Search dir: run store, journal, worker logs.")] = Path("sweeps/search"),
        sampler_seed: Annotated[int, typer.Option(help="Sampler seed (worker k uses seed + k).")] = 0,
        options: StudyOptions = None,  # type: ignore[assignment]  # the shared run settings (study_options)
    ) -> None:
        """Minimise final validation loss (or --objective's value) over the chosen HPs, starting from the rule's
        defaults (trial 0). Killed workers lose nothing: their trial is failed (heartbeat on RDB storages, dead pid
        locally) and retried once with the same parameters, resuming its run from the store."""
        if trials < 1 or workers < 1:
            raise SearchError("error: --trials and --workers must be at least 1")
        rules = sweeps.load_rules(rule, options.params())
        run = options.run_args(rule, {})
        settings = studies.search_settings(
            rules, run, out, space, hp or [], sampler, trials, storage, study, sampler_seed
        )
        dims = [d.name for d in settings.dims]
        console.print(
            f"search: {settings.study_name()} | {sampler} | {trials} trials | {workers} worker(s) | "
            f"{len(dims)} HPs: {', '.join(dims)}",
            markup=False,
            soft_wrap=True,
        )
        with StudyProgress("search", trials) as bar:
            result = searches.run_search(settings, workers, progress=bar.update)
        console.print(
            f"{len(result.trials)} complete trials, {result.n_fail} failed (retried), "
            f"{result.n_over_budget} over budget, {result.n_duplicate} repeated points skipped",
            markup=False,
            soft_wrap=True,
        )
        if result.best_params is None:
            console.print("no trial finished (all diverged)", markup=False, soft_wrap=True)
            raise typer.Exit(2)
        ranked = sorted(result.trials, key=lambda t: (not math.isfinite(t["value"]), t["value"]))
        for t in ranked[:5]:
            value = "inf" if math.isinf(t["value"]) else f"{t['value']:.4f}"
            console.print(
                f"  trial {t['number']:>3}: {value}  "
                + " ".join(f"{k}={sweeps.fmt_value(v)}" for k, v in t["params"].items()),
                markup=False,
                soft_wrap=True,
            )
        hp_text = " ".join(f"--hp '{k}={v:.6g}'" for k, v in result.best_params.items())
        what = "objective" if options.objective else "final val loss"
        console.print(f"best: {what} {result.best_value:.4f} with {hp_text}", markup=False, soft_wrap=True)
