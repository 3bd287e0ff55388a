"""The bundled GPT's coordinate checks of several rules as one set of training runs (what `scalec compare
--empirical` trains).

A point is one plan at one (width, depth), trained for every seed. Points whose plans are identical number for
number (the same model config, per-tensor init and optimizer settings, multipliers, steps and seeds:
`GPTSubject.run_key`) train identically, so each distinct point is trained once and shared: the base shape, where
every rule is the identity and which both sweeps of a rule contain, is trained once instead of eight times for
four rules. The distinct points are trained in worker processes (largest first); each seed seeds itself and the
data are fixed, so the curves are those a serial run gives.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from scalec.compiler.parameterisation import load
from scalec.runtime.studies.coord_check import (
    CoordCheckConfig,
    CoordCheckError,
    CoordCheckResult,
    PointRuns,
    run_coord_check,
    seed_runs,
    sweep_points,
)
from scalec.runtime.studies.coord_subject import GPTSubject
from scalec.runtime.trainer.data import Batch


@dataclass(frozen=True)
class Point:
    """One distinct training point: the first rule (index into the checks) that needs it, at (width, depth)."""

    check: int
    width: int
    depth: int

    @property
    def cost(self) -> int:
        """Relative training cost (block matmuls plus the 256-byte embedding and readout), to start big ones first."""
        return self.width * self.width * self.depth + 2 * 256 * self.width


@dataclass
class SharedPoints:
    """Each check's points by (width, depth) -> key, and the distinct keys -> the Point that trains them."""

    keys: list[dict[tuple[int, int], str]]
    distinct: dict[str, Point]
    total: int  # points the sweeps name (a rule's base point once per sweep)


def shared_points(checks: Sequence[tuple[Any, CoordCheckConfig]], subject: GPTSubject) -> SharedPoints:
    """Plan every point of every check (meta device, no training) and group the identical ones."""
    keys: list[dict[tuple[int, int], str]] = []
    distinct: dict[str, Point] = {}
    for i, (rules, cfg) in enumerate(checks):
        mine: dict[tuple[int, int], str] = {}
        for _, width, depth in sweep_points(cfg):
            if (width, depth) not in mine:
                mine[(width, depth)] = subject.run_key(rules, width, depth, cfg)
                distinct.setdefault(mine[(width, depth)], Point(i, width, depth))
        keys.append(mine)
    return SharedPoints(keys, distinct, sum(len(sweep_points(cfg)) for _, cfg in checks))


def _start_worker(threads: int) -> None:
    torch.set_num_threads(threads)


def _train_in_worker(
    inputs: tuple[Any, ...], fold: bool, cfg: CoordCheckConfig, point: Point, key: str, batches, probe
) -> tuple[PointRuns, float]:
    """A worker's job: load the rule (from the rule cache), check that its plan is still the one keyed, train."""
    name_or_path, params, base = inputs
    rules = load(name_or_path, params or None, base or None, fold=fold)
    subject = GPTSubject()
    if subject.run_key(rules, point.width, point.depth, cfg) != key:
        raise CoordCheckError(f"error: rule {name_or_path} changed on disk during the coordinate checks; rerun")
    start = time.perf_counter()
    runs = seed_runs(rules, point.width, point.depth, cfg, batches, probe, subject)
    return runs, time.perf_counter() - start


def _save_in_worker(result: CoordCheckResult, out: Path) -> dict[str, Path]:
    return result.save(out)


def run_coord_checks(
    checks: Sequence[tuple[Any, CoordCheckConfig]],
    batches: Sequence[Batch],
    probe: torch.Tensor,
    workers: int = 2,
    progress: Callable[[int, int], None] | None = None,
    outs: Sequence[Path] | None = None,
) -> tuple[list[CoordCheckResult], list[dict[str, Path]], SharedPoints]:
    """Coordinate checks of the bundled GPT under each (rules, config), every distinct point trained once, in
    `workers` processes (1: here); with `outs`, each result is saved there (`CoordCheckResult.save`: JSON, CSV,
    plots) by the same workers. Returns (results, their {sweep: plot} (empty without `outs`), the shared points).
    `progress(done, total)` after each point. Each result's `wall_s` is the training time of the points it uses."""
    subject = GPTSubject()
    shared = shared_points(checks, subject)
    order = sorted(shared.distinct, key=lambda k: -shared.distinct[k].cost)
    done: dict[str, tuple[PointRuns, float]] = {}
    if progress:
        progress(0, len(order))
    if workers <= 1 or len(order) <= 1:
        for key in order:
            point = shared.distinct[key]
            rules, cfg = checks[point.check]
            start = time.perf_counter()
            runs = seed_runs(rules, point.width, point.depth, cfg, batches, probe, subject)
            done[key] = (runs, time.perf_counter() - start)
            if progress:
                progress(len(done), len(order))
        results = _assemble(checks, shared, done, batches, probe)
        plots = [r.save(out) for r, out in zip(results, outs, strict=True)] if outs is not None else []
        return results, plots, shared
    # fork: a worker starts in milliseconds with everything imported (spawn re-imports torch, ~15 s under load);
    # safe here because no torch thread pool runs in the parent (it only planned on the meta device) and each
    # worker computes with the parent's thread count
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    with ProcessPoolExecutor(min(workers, len(order)), mp_context=context, initializer=_start_worker,
                             initargs=(torch.get_num_threads(),)) as pool:  # fmt: skip
        pending = {}
        for key in order:
            point = shared.distinct[key]
            rules, cfg = checks[point.check]
            job = (rules.inputs, rules.fold, cfg, point, key, batches, probe)
            pending[pool.submit(_train_in_worker, *job)] = key
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                done[pending.pop(future)] = future.result()
            if progress:
                progress(len(done), len(order))
        results = _assemble(checks, shared, done, batches, probe)
        saving = [pool.submit(_save_in_worker, r, out) for r, out in zip(results, outs, strict=True)] if outs else []
        plots = [f.result() for f in saving]
    return results, plots, shared


def _assemble(checks, shared: SharedPoints, done, batches, probe) -> list[CoordCheckResult]:
    """Each check's result from the trained points (run_coord_check fits and judges them)."""
    results = []
    for (rules, cfg), keys in zip(checks, shared.keys, strict=True):
        result = run_coord_check(rules, cfg, batches, probe, trained=lambda w, d, keys=keys: done[keys[(w, d)]][0])
        result.wall_s = sum(done[k][1] for k in set(keys.values()))
        results.append(result)
    return results
