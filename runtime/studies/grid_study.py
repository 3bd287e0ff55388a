"""A sweep's or transfer study's grid of runs shared out among worker processes, on one machine or many, as
`search` shares its trials: through an Optuna study in a journal file or an RDB (PostgreSQL) storage.

Each run of the grid is one trial, enqueued WAITING with its index (param `run`); a worker claims a WAITING trial
(Optuna's WAITING -> RUNNING change is atomic, so each run is claimed once), trains the run through the RunStore
and completes the trial. A worker that dies mid-run leaves a RUNNING trial: the others fail it (dead pid on this
host, heartbeat on RDB storages) and retry it once, which resumes its run from the store (`search_worker`'s
reaping). The study's tables are then read from the store in grid order, the same as a single-process run's.
`<out>/grid_settings.json` is what a worker anywhere runs: `python -m scalec.runtime.studies.grid_study
<out>/grid_settings.json [K]`.
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from scalec.errors import ScalecError
from scalec.runtime.studies.liveness import holder_id
from scalec.runtime.studies.run_store import RunRecord, RunStore, config_key, load_run_fn
from scalec.runtime.studies.search import supervise
from scalec.runtime.studies.search_settings import Dim, SearchError, SearchSettings
from scalec.runtime.studies.search_storage import open_study
from scalec.runtime.studies.search_worker import ProgressFn, counted_runs, reap_dead_trials

RUN = "run"  # the trial param holding the run's index in the grid


@dataclass
class GridSettings:
    """Everything a grid worker needs (plain data, JSON round-trips): the run configs and where they are stored."""

    configs: list[dict[str, Any]]
    out: str  # the RunStore root
    storage: str | None = None  # None: <out>/study.journal
    study: str | None = None
    run_fn: str = "scalec.runtime.studies.sweep:train_run_fn"
    heartbeat_interval: int = 10
    grace_period: int = 30
    max_retry: int = 1
    poll_s: float = 1.0

    def search_settings(self) -> SearchSettings:
        """The same storage, liveness and retry settings in the form `search_storage` / `search_worker` take."""
        name = self.study or f"scalec-grid-{config_key({'configs': self.configs})[:8]}"
        return SearchSettings(
            dims=[Dim(RUN, 0.0, float(len(self.configs)), log=False)],
            fixed={},
            n_trials=len(self.configs),
            out=self.out,
            sampler="random",
            storage=self.storage,
            study=name,
            run_fn=self.run_fn,
            heartbeat_interval=self.heartbeat_interval,
            grace_period=self.grace_period,
            max_retry=self.max_retry,
            poll_s=self.poll_s,
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> GridSettings:
        return cls(**json.loads(text))


def prepare(settings: GridSettings) -> Any:
    """Create the study, enqueue every run that no COMPLETE, WAITING or RUNNING trial holds (a rerun enqueues what a
    killed study left), and write `<out>/grid_settings.json`."""
    from optuna.trial import TrialState

    if any(str(c.get(k, "")).startswith("python:") for c in settings.configs for k in ("model", "objective")):
        raise SearchError(
            "error: worker processes import the model and objective anew; pass them as 'FILE.py:FUNC', not callables"
        )
    out = Path(settings.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "grid_settings.json").write_text(settings.to_json())
    except OSError as exc:
        raise SearchError(f"error: --out {out}: cannot write the study dir ({exc.strerror or exc})") from None
    study = open_study(settings.search_settings()).study
    held = {
        int(t.params[RUN])
        for t in study.get_trials(deepcopy=False)
        if RUN in t.params and t.state in (TrialState.COMPLETE, TrialState.WAITING, TrialState.RUNNING)
    }
    held |= {
        int(t.system_attrs["fixed_params"][RUN])
        for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
        if RUN in t.system_attrs.get("fixed_params", {})
    }
    for i in range(len(settings.configs)):
        if i not in held:
            study.enqueue_trial({RUN: float(i)})
    return study


def run_grid_worker(settings: GridSettings, worker: int = 0, progress: ProgressFn | None = None) -> int:
    """Claim and run WAITING runs until none is WAITING or RUNNING; returns how many this worker ran."""
    import optuna
    from optuna.trial import TrialState

    search = settings.search_settings()
    handle = open_study(search, worker)
    study, store, run_fn, me, ran = handle.study, RunStore(settings.out), load_run_fn(settings.run_fn), holder_id(), 0
    while True:
        reap_dead_trials(handle, search)
        if handle.rdb:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(study)
        trials = study.get_trials(deepcopy=False)
        if progress is not None:
            progress(len(counted_runs(trials)), len(settings.configs))
        waiting = sum(t.state == TrialState.WAITING for t in trials)
        if not waiting:
            if not any(t.state == TrialState.RUNNING for t in trials):
                return ran
            time.sleep(settings.poll_s)  # a running run may finish, or its worker die and it come back WAITING
            continue
        trial = study.ask()  # takes a WAITING trial when one is left (atomically), else makes a fresh one
        trial.set_user_attr("worker", me)
        frozen = handle.storage.get_trial(handle.trial_id(trial.number))
        if RUN not in frozen.params and RUN not in frozen.system_attrs.get("fixed_params", {}):
            study.tell(trial, state=TrialState.PRUNED)  # another worker took the last WAITING one first
            continue
        index = int(trial.suggest_float(RUN, 0.0, float(len(settings.configs))))  # the enqueued (or retried) index
        config = settings.configs[index]
        trial.set_user_attr("run", config_key(config))
        record = store.run(config, run_fn)
        ran += 1
        trial.set_user_attr("status", record.status)
        if record.status == "failed":
            trial.set_user_attr("error", (record.error or "run failed").splitlines()[0])
            study.tell(trial, state=TrialState.FAIL)
        elif record.status == "running":  # a live process elsewhere trains this very config
            study.tell(trial, state=TrialState.PRUNED)
        else:
            loss = record.loss
            study.tell(trial, loss if loss == loss and loss != float("inf") else float("inf"))


def collect(settings: GridSettings) -> list[RunRecord]:
    """Every run's record from the store, in grid order ("failed" with a reason where none finished)."""
    store, records = RunStore(settings.out), []
    for config in settings.configs:
        record = store.get(config)
        if record is None:
            record = RunRecord(config_key(config), dict(config), "failed", error="the run has no result in the store")
        records.append(record)
    return records


def run_grid(settings: GridSettings, workers: int = 1, progress: ProgressFn | None = None) -> list[RunRecord]:
    """Share the grid among `workers` processes on this machine (in this process when 1; others may join from
    any machine with the worker command) and return its records in grid order."""
    import subprocess

    prepare(settings)
    if workers <= 1:
        run_grid_worker(settings, progress=progress)
    else:
        out = Path(settings.out)
        procs = []
        for i in range(workers):
            with open(out / f"worker{i}.log", "w") as log:
                procs.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            "-m",
                            "scalec.runtime.studies.grid_study",
                            str(out / "grid_settings.json"),
                            str(i),
                        ],
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
        supervise(settings.search_settings(), procs, progress)
    return collect(settings)


def grid_runner(storage: str | None, workers: int, study: str | None = None, progress: ProgressFn | None = None):
    """A `run_sweep`-shaped runner (configs, store) -> records that shares the grid out (see `run_grid`)."""

    def run(configs: list[Mapping[str, Any]], store: RunStore) -> list[RunRecord]:
        settings = GridSettings([dict(c) for c in configs], str(store.root), storage, study)
        return run_grid(settings, workers, progress)

    return run


def main(argv: list[str]) -> int:
    """Worker entry point: `python -m scalec.runtime.studies.grid_study GRID_SETTINGS_JSON [WORKER_INDEX]`."""
    try:
        run_grid_worker(GridSettings.from_json(Path(argv[0]).read_text()), int(argv[1]) if len(argv) > 1 else 0)
    except ScalecError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
