"""One search worker: run trials until the study holds `n_trials` distinct COMPLETE runs; safe in many
processes at once, and after any kill.

Budget: a COMPLETE trial counts once per run (config key, user attr `run`); a trial whose run is already
counted or being trained is PRUNED (`duplicate`), and one started when the runs counted plus the RUNNING and
WAITING trials numbered below it already fill the budget is PRUNED (`over_budget`). WAITING trials (the rule's
default point, retries) are run by whichever worker is free, first.

Dead workers: every trial records its worker as `host:pid:start` (liveness.holder_id). A RUNNING trial whose
worker on this host is dead (a zombie counts as dead), or that never got a worker attr within the grace period,
is set FAIL by the first worker to notice and retried once (`max_retry`) as a WAITING trial with the same
parameters, which resumes the dead worker's run from the RunStore. RDB storages also fail trials whose
heartbeat stopped (workers on other hosts).
"""

from __future__ import annotations

import datetime
import time
import warnings
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from scalec.runtime.studies.liveness import holder_alive, holder_id
from scalec.runtime.studies.run_store import RunRecord, RunStore, config_key, load_run_fn
from scalec.runtime.studies.search_samplers import make_sampler
from scalec.runtime.studies.search_settings import SearchError, SearchSettings
from scalec.runtime.studies.search_storage import OpenStudy, open_study
from scalec.runtime.studies.user_objective import pruning

# progress(done, total): distinct runs counted so far out of the budget.
ProgressFn = Callable[[int, int], None]


@dataclass
class WorkerReport:
    """What one worker did."""

    trials: int = 0
    over_budget: int = 0
    duplicates: int = 0
    reclaimed: list[int] = field(default_factory=list)


def counted_runs(trials: Sequence[Any], exclude: int | None = None) -> set[str]:
    """Run keys of the COMPLETE trials (other than trial `exclude`): what the budget counts."""
    from optuna.trial import TrialState

    return {
        t.user_attrs.get("run", f"trial-{t.number}")
        for t in trials
        if t.state == TrialState.COMPLETE and t.number != exclude
    }


def committed_before(trials: Sequence[Any], number: int) -> int:
    """Runs counted plus RUNNING and WAITING trials numbered below `number`: the budget already promised."""
    from optuna.trial import TrialState

    pending = sum(t.state in (TrialState.RUNNING, TrialState.WAITING) and t.number < number for t in trials)
    return len(counted_runs(trials, exclude=number)) + pending


def _dead(trial: Any, grace_s: float) -> bool:
    """A RUNNING trial whose worker on this host is gone, or that has had no worker for `grace_s` seconds
    (its worker was killed between taking the trial and naming itself)."""
    worker = trial.user_attrs.get("worker")
    if worker is None:
        started = trial.datetime_start
        return started is not None and (datetime.datetime.now() - started).total_seconds() > grace_s
    return holder_alive(worker) is False


def reap_dead_trials(handle: OpenStudy, settings: SearchSettings, report: WorkerReport | None = None) -> list[int]:
    """FAIL the RUNNING trials whose worker is dead and enqueue one retry of each (see the module docstring);
    returns the numbers failed here. Only one worker wins each trial (the state change is atomic)."""
    import optuna
    from optuna.trial import TrialState

    reaped = []
    dists = {d.name: optuna.distributions.FloatDistribution(d.low, d.high, log=d.log) for d in settings.dims}
    for t in handle.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if not _dead(t, settings.grace_period):
            continue
        try:
            if not handle.storage.set_trial_state_values(handle.trial_id(t.number), state=TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another worker (or the heartbeat) got there first
        reaped.append(t.number)
        if report is not None:
            report.reclaimed.append(t.number)
        params = {**t.system_attrs.get("fixed_params", {}), **t.params}
        history = [*t.system_attrs.get("retry_history", []), t.number]
        if set(params) != set(dists) or len(history) > settings.max_retry:
            continue  # killed before it chose its parameters (nothing to resume), or retried enough
        handle.study.add_trial(
            optuna.trial.create_trial(
                state=TrialState.WAITING,
                params=params,
                distributions=dists,
                user_attrs={k: v for k, v in t.user_attrs.items() if k not in ("worker", "status")},
                system_attrs={
                    **{k: v for k, v in t.system_attrs.items() if k != "fixed_params"},
                    "failed_trial": t.number,
                    "retry_history": history,
                },
            )
        )
    return reaped


def run_worker(settings: SearchSettings, worker: int = 0, progress: ProgressFn | None = None) -> WorkerReport:
    """Run trials until the study holds `n_trials` distinct COMPLETE runs (see the module docstring)."""
    from optuna.trial import TrialState

    handle = _open_worker_study(settings, worker)
    objective = _Objective(settings, handle.study)
    report = WorkerReport()
    failures = 0
    while True:
        _reclaim_dead_trials(handle, settings, report)
        trials = handle.study.get_trials(deepcopy=False)
        done = len(counted_runs(trials))
        if progress is not None:
            progress(done, settings.n_trials)
        waiting = sum(t.state == TrialState.WAITING for t in trials)
        running = sum(t.state == TrialState.RUNNING for t in trials)
        if done >= settings.n_trials and not waiting:
            return report
        if not waiting and done + running >= settings.n_trials:
            time.sleep(settings.poll_s)  # a running trial may finish, or die and come back as WAITING
            continue
        failures = _tally(report, _run_one_trial(handle.study, objective), failures)
        if failures >= 3:
            raise SearchError("error: search: 3 trials in a row failed; see result.json in the run store")


def _open_worker_study(settings: SearchSettings, worker: int) -> OpenStudy:
    """The study, opened or created; on a rerun with a fresh sampler stream, so it does not replay the points the
    killed run tried."""
    handle = open_study(settings, worker)
    known = len(handle.study.get_trials(deepcopy=False))
    if known:
        seed = zlib.crc32(f"{settings.seed}:{worker}:{known}".encode())
        handle.study.sampler = make_sampler(settings.sampler, settings.dims, seed, settings.startup_trials)
    return handle


def _reclaim_dead_trials(handle: OpenStudy, settings: SearchSettings, report: WorkerReport) -> None:
    """Fail (and retry once) the trials of dead workers on this host; on RDB storages also those whose heartbeat
    stopped."""
    import optuna

    reap_dead_trials(handle, settings, report)
    if handle.rdb:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(handle.study)


def _run_one_trial(study: Any, objective: Callable[[Any], float]) -> Any:
    """One trial (a WAITING one first, else a newly sampled one); the finished trial, or None when none finished.
    A failed run (RuntimeError) leaves the trial FAIL instead of raising."""
    finished: list[Any] = []
    study.optimize(
        objective,
        n_trials=1,
        catch=(RuntimeError,),
        callbacks=[lambda _study, frozen, acc=finished: acc.append(frozen)],
    )
    return finished[-1] if finished else None


def _tally(report: WorkerReport, last: Any, failures: int) -> int:
    """Count one trial (over budget, duplicate) into `report`; the number of FAIL trials in a row, `last` included."""
    from optuna.trial import TrialState

    report.trials += 1
    if last is not None and last.user_attrs.get("over_budget"):
        report.over_budget += 1
    if last is not None and last.user_attrs.get("duplicate"):
        report.duplicates += 1
    return failures + 1 if last is not None and last.state == TrialState.FAIL else 0


def _prune(trial: Any, why: str) -> NoReturn:
    """End `trial` PRUNED, with user attr `why` (duplicate, over_budget, pruned) set."""
    import optuna

    trial.set_user_attr(why, True)
    raise optuna.TrialPruned()


class _Objective:
    """One worker's optuna objective: a trial trains (or resumes) one run in the RunStore, and is PRUNED when its
    run is already counted or being trained, or when the budget is full (before and after training)."""

    def __init__(self, settings: SearchSettings, study: Any):
        self.settings, self.study = settings, study
        self.store = RunStore(Path(settings.out) / "store")
        self.run_fn = load_run_fn(settings.run_fn)
        self.me = holder_id()

    def __call__(self, trial: Any) -> float:
        trial.set_user_attr("worker", self.me)
        params = {d.name: trial.suggest_float(d.name, d.low, d.high, log=d.log) for d in self.settings.dims}
        config = self.store.keyed(self.settings.run_config(params), self.run_fn)
        key = config_key(config)
        trial.set_user_attr("run", key)
        self._admit(trial, key)
        record = self._train(trial, config)
        self._count(trial, key)
        return record.loss  # read only once the run is counted, as a pruned trial never reads it

    def _admit(self, trial: Any, key: str) -> None:
        """Prune before training: the run is already counted, or the budget is already promised."""
        trials = self.study.get_trials(deepcopy=False)
        if key in counted_runs(trials, exclude=trial.number):
            _prune(trial, "duplicate")
        if committed_before(trials, trial.number) >= self.settings.n_trials:
            _prune(trial, "over_budget")

    def _train(self, trial: Any, config: dict) -> RunRecord:
        """Train (or resume) the run, reporting its losses to optuna's pruner; its record, or prune/raise on how it
        ended (pruned, being trained by a live process, failed)."""

        def report(step: int, loss: float) -> bool:  # run.report(step, loss) in a user's objective
            trial.report(loss, step)
            return trial.should_prune()

        with pruning(report):
            record = self.store.run(config, self.run_fn)
        trial.set_user_attr("status", record.status)
        if record.summary.get("pruned"):
            _prune(trial, "pruned")
        if record.status == "running":
            _prune(trial, "duplicate")  # the same run is being trained by a live process
        if record.status == "failed":
            trial.set_user_attr("error", (record.error or "run failed").splitlines()[0])
            raise RuntimeError((record.error or "run failed").splitlines()[0])
        return record

    def _count(self, trial: Any, key: str) -> None:
        """Prune after training: another trial counted the same run meanwhile, or the budget filled."""
        counted = counted_runs(self.study.get_trials(deepcopy=False), exclude=trial.number)
        if key in counted:
            _prune(trial, "duplicate")
        if len(counted) >= self.settings.n_trials:
            _prune(trial, "over_budget")
