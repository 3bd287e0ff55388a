"""Optuna search over a rule's per-module multipliers and global HPs, shared by many worker processes.

Storage: a JournalStorage file (`<out>/study.journal`) by default; an RDB URL (`sqlite:///...`,
`postgresql://...`) lets workers on many machines share one study. RDB studies run Optuna's heartbeat: a
trial whose worker died turns FAIL after the grace period and is retried once with the same parameters.
Workers on one host also fail trials whose recorded worker pid is dead (JournalStorage has no heartbeat).
Each trial trains through a RunStore, so a retried trial resumes the dead worker's run. The trial budget
counts COMPLETE trials only and is exact: a trial started beyond it is PRUNED (user attr `over_budget`).

Samplers: `tpe`, `cmaes`, `random`, and `trust-region`, a random search in a box around the incumbent in
normalised log space that halves its radius after `patience` trials without improvement and doubles it (up
to the start radius) on improvement -- the robust local search Complete^(d)P (arXiv 2512.22382) recommends
where the divergence boundary is jagged. Its state is a pure function of the study's trials, so it works
across workers.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import math
import os
import random
import re
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from scalec.errors import ScalecError
from scalec.runtime.studies.run_store import RunFn, RunStore, _pid_alive, config_key

SAMPLERS = ("tpe", "cmaes", "random", "trust-region")
RDB_PREFIXES = ("sqlite:", "postgresql", "postgres:", "mysql")


class SearchError(ScalecError):
    """Bad search settings (sampler, storage URL, empty space)."""


@dataclass(frozen=True)
class Dim:
    """One searched HP: bounds, log or linear scale, and the start point (the rule's default)."""

    name: str
    low: float
    high: float
    log: bool = True
    default: float | None = None

    def to_unit(self, x: float) -> float:
        """Map a value into [0, 1] (log-space when `log`)."""
        if self.log:
            return (math.log(x) - math.log(self.low)) / (math.log(self.high) - math.log(self.low))
        return (x - self.low) / (self.high - self.low)

    def from_unit(self, u: float) -> float:
        """Inverse of `to_unit`, clipped into the bounds."""
        u = min(1.0, max(0.0, u))
        if self.log:
            return min(
                self.high,
                max(self.low, math.exp(math.log(self.low) + u * (math.log(self.high) - math.log(self.low)))),
            )
        return self.low + u * (self.high - self.low)


@dataclass
class SearchSettings:
    """Everything a worker process needs (plain data, JSON round-trips)."""

    dims: list[Dim]
    fixed: dict[str, Any]
    n_trials: int
    out: str
    sampler: str = "tpe"
    storage: str | None = None
    study: str | None = None
    seed: int = 0
    run_fn: str = "scalec.runtime.studies.sweep:train_run_fn"
    heartbeat_interval: int = 10
    grace_period: int = 30
    max_retry: int = 1
    poll_s: float = 1.0
    startup_trials: int = 8

    def to_json(self) -> str:
        """JSON text of the settings."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> SearchSettings:
        """Settings from `to_json` text."""
        data = json.loads(text)
        data["dims"] = [Dim(**d) for d in data["dims"]]
        return cls(**data)

    def study_name(self) -> str:
        """The given study name, or one derived from the rule, fixed settings and search space."""
        if self.study:
            return self.study
        ident = {"fixed": self.fixed, "dims": [asdict(d) for d in self.dims], "n": self.n_trials}
        return f"scalec-{self.fixed.get('rule', 'search')}-{config_key(ident)[:8]}"


def default_dims(hp_space: Mapping[str, Any], patterns: Sequence[str], roles: Sequence[str] | None = None) -> list[Dim]:
    """Dims for HP_SPACE names matching `patterns` (`*` is the only wildcard: `eta`, `lr[*]`, `lr[attn.*]`);
    multipliers limited to `roles`."""
    regexes = [re.compile(".*".join(re.escape(part) for part in p.split("*")) + r"\Z") for p in patterns]
    dims = []
    for name, spec in hp_space.items():
        if not any(r.match(name) for r in regexes):
            continue
        if roles is not None and "[" in name and name.split("[", 1)[1].rstrip("]") not in roles:
            continue
        dims.append(
            Dim(
                name,
                float(spec.low),
                float(spec.high),
                getattr(spec, "scale", "log") == "log",
                float(spec.default),
            )
        )
    if not dims:
        raise SearchError(f"error: --space {','.join(patterns)}: matches no tunable HP of the rule; try 'eta,lr[*]'")
    return dims


class TrustRegionSampler:
    """Random search in a shrinking box around the best trial so far (see the module docstring)."""

    def __init__(
        self,
        dims: Sequence[Dim],
        seed: int = 0,
        radius: float = 0.25,
        patience: int = 4,
        min_radius: float = 1 / 64,
    ) -> None:
        import optuna

        self.dims = list(dims)
        self.radius0, self.patience, self.min_radius = radius, patience, min_radius
        self._rng = random.Random(seed)
        self._dists = {d.name: optuna.distributions.FloatDistribution(d.low, d.high, log=d.log) for d in dims}
        self._fallback = optuna.samplers.RandomSampler(seed=seed)

    def state(self, trials: Sequence[Any]) -> tuple[dict[str, float], float]:
        """(centre in unit coordinates, radius) after replaying the COMPLETE trials in order."""
        centre = {
            d.name: d.to_unit(
                d.default if d.default is not None else math.sqrt(d.low * d.high) if d.log else (d.low + d.high) / 2
            )
            for d in self.dims
        }
        best, radius, stall = math.inf, self.radius0, 0
        for t in sorted(trials, key=lambda t: t.number):
            if t.value is None or not all(d.name in t.params for d in self.dims):
                continue
            if t.value < best:
                if math.isfinite(best):
                    radius = min(self.radius0, radius * 2)
                best, stall = t.value, 0
                centre = {d.name: d.to_unit(t.params[d.name]) for d in self.dims}
            else:
                stall += 1
                if stall >= self.patience:
                    radius, stall = max(self.min_radius, radius / 2), 0
        return centre, radius

    # optuna.samplers.BaseSampler protocol
    def infer_relative_search_space(self, study: Any, trial: Any) -> dict[str, Any]:
        return dict(self._dists)

    def sample_relative(self, study: Any, trial: Any, search_space: Mapping[str, Any]) -> dict[str, Any]:
        import optuna

        done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        centre, radius = self.state(done)
        return {d.name: d.from_unit(centre[d.name] + self._rng.uniform(-radius, radius)) for d in self.dims}

    def sample_independent(self, study: Any, trial: Any, name: str, dist: Any) -> Any:
        return self._fallback.sample_independent(study, trial, name, dist)

    def before_trial(self, study: Any, trial: Any) -> None:
        pass

    def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
        pass

    def reseed_rng(self) -> None:
        self._rng = random.Random()


def make_sampler(name: str, dims: Sequence[Dim], seed: int = 0, startup_trials: int = 8) -> Any:
    """An Optuna sampler by name (`tpe`, `cmaes`, `random`, `trust-region`)."""
    import optuna

    if name == "tpe":
        return optuna.samplers.TPESampler(
            seed=seed, n_startup_trials=startup_trials, multivariate=True, constant_liar=True
        )
    if name == "cmaes":
        if importlib.util.find_spec("cmaes") is None:
            raise SearchError("error: --sampler cmaes needs the `cmaes` package; pip install cmaes")
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "trust-region":
        return _as_optuna_sampler(TrustRegionSampler(dims, seed=seed))
    raise SearchError(f"error: --sampler {name}: unknown; choose one of {', '.join(SAMPLERS)}")


def _as_optuna_sampler(impl: TrustRegionSampler) -> Any:
    import optuna

    class _Sampler(optuna.samplers.BaseSampler):
        def infer_relative_search_space(self, study, trial):
            return impl.infer_relative_search_space(study, trial)

        def sample_relative(self, study, trial, search_space):
            return impl.sample_relative(study, trial, search_space)

        def sample_independent(self, study, trial, param_name, param_distribution):
            return impl.sample_independent(study, trial, param_name, param_distribution)

    sampler = _Sampler()
    sampler.impl = impl  # type: ignore[attr-defined]
    return sampler


def make_storage(settings: SearchSettings) -> Any:
    """JournalStorage file under `out` by default; RDBStorage (heartbeat + one retry) for an RDB URL."""
    import optuna
    from optuna.storages import JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
    from optuna.storages.journal import JournalFileBackend

    url = settings.storage
    if url is None or url.endswith(".journal") or url.startswith("journal:"):
        path = Path(url.removeprefix("journal:") if url else Path(settings.out) / "study.journal")
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    if not url.startswith(RDB_PREFIXES):
        raise SearchError(
            f"error: --storage {url}: expected an RDB URL (sqlite:///file.db, "
            f"postgresql://user@host/db) or a path ending in .journal"
        )
    url = _with_driver(url)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return RDBStorage(
                url,
                heartbeat_interval=settings.heartbeat_interval,
                grace_period=settings.grace_period,
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=settings.max_retry),
            )
    except (ImportError, ModuleNotFoundError) as exc:
        raise SearchError(
            f"error: --storage {url}: driver missing ({exc}); for PostgreSQL install scalec[postgres]"
        ) from None
    except optuna.exceptions.StorageInternalError as exc:
        raise SearchError(f"error: --storage {url}: cannot connect ({str(exc).splitlines()[0]})") from None


def _with_driver(url: str) -> str:
    """`postgresql://` takes SQLAlchemy's default driver (psycopg 3 in SQLAlchemy 2.1); else psycopg2."""
    scheme, sep, rest = url.partition("://")
    if scheme not in ("postgresql", "postgres") or not sep:
        return url
    for module, dialect in (("psycopg", "postgresql+psycopg"), ("psycopg2", "postgresql+psycopg2")):
        try:
            importlib.import_module(module)
        except ImportError:
            continue
        return f"{dialect}://{rest}"
    return url


def open_study(settings: SearchSettings, worker: int = 0) -> Any:
    """Create or load the study named by the settings (minimising final val loss); worker k seeds seed+k."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = make_sampler(settings.sampler, settings.dims, settings.seed + worker, settings.startup_trials)
    storage = make_storage(settings)
    for attempt in range(5):  # workers starting together race to create the RDB tables
        try:
            return optuna.create_study(
                storage=storage,
                study_name=settings.study_name(),
                sampler=sampler,
                direction="minimize",
                load_if_exists=True,
            )
        except Exception:  # sqlalchemy errors from the race; re-raised on the last try
            if attempt == 4:
                raise
            time.sleep(0.5 + random.random())
            storage = make_storage(settings)
    raise AssertionError("unreachable")


def prepare_study(settings: SearchSettings) -> Any:
    """Create the study (and its tables) once, enqueueing the rule's default point as the first trial, and write
    `<out>/search_settings.json` (what workers on other machines run:
    `python -m scalec.runtime.studies.search FILE`)."""
    out = Path(settings.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "search_settings.json").write_text(settings.to_json())
    study = open_study(settings)
    defaults = {d.name: d.default for d in settings.dims if d.default is not None and d.low <= d.default <= d.high}
    if not study.trials and len(defaults) == len(settings.dims):
        study.enqueue_trial(defaults, skip_if_exists=True)
    return study


def load_run_fn(path: str) -> RunFn:
    """Import a `module:function` run function."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


@dataclass
class WorkerReport:
    """What one worker did."""

    trials: int = 0
    over_budget: int = 0
    reclaimed: list[int] = field(default_factory=list)


def _fail_dead_local_trials(study: Any, settings: SearchSettings, report: WorkerReport) -> None:
    """FAIL RUNNING trials whose worker process on this host is dead, and enqueue one retry of each."""
    import optuna
    from optuna.trial import TrialState

    host = socket.gethostname()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = t.user_attrs.get("worker", "")
        w_host, _, pid = worker.rpartition(":")
        if w_host != host or not pid.isdigit() or _pid_alive(int(pid)):
            continue
        try:
            if not study._storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another worker (or the heartbeat) got there first
        report.reclaimed.append(t.number)
        history = [*t.system_attrs.get("retry_history", []), t.number]
        if len(history) <= settings.max_retry:
            study.add_trial(
                optuna.trial.create_trial(
                    state=TrialState.WAITING,
                    params=t.params,
                    distributions=t.distributions,
                    user_attrs={k: v for k, v in t.user_attrs.items() if k != "worker"},
                    system_attrs={**t.system_attrs, "failed_trial": t.number, "retry_history": history},
                )
            )


def run_worker(settings: SearchSettings, worker: int = 0) -> WorkerReport:
    """Run trials until the study holds `n_trials` COMPLETE trials; safe to run in many processes at once."""
    import optuna
    from optuna.trial import TrialState

    study = open_study(settings, worker)
    store = RunStore(Path(settings.out) / "store")
    run_fn = load_run_fn(settings.run_fn)
    report = WorkerReport()
    me = f"{socket.gethostname()}:{os.getpid()}"
    counted = (TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING)

    def objective(trial: Any) -> float:
        trial.set_user_attr("worker", me)
        earlier = study.get_trials(deepcopy=False, states=counted)
        if sum(t.number < trial.number for t in earlier) >= settings.n_trials:
            trial.set_user_attr("over_budget", True)
            raise optuna.TrialPruned()
        params = {d.name: trial.suggest_float(d.name, d.low, d.high, log=d.log) for d in settings.dims}
        config = {**settings.fixed, "hp": {**settings.fixed.get("hp", {}), **params}}
        record = store.run(config, run_fn)
        trial.set_user_attr("run", record.key)
        trial.set_user_attr("status", record.status)
        if record.status == "failed":
            raise RuntimeError((record.error or "run failed").splitlines()[0])
        if record.status == "running":
            raise RuntimeError(f"run {record.key} is being trained by another live process")
        if len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))) >= settings.n_trials:
            trial.set_user_attr("over_budget", True)
            raise optuna.TrialPruned()
        return record.loss

    failures = 0
    while True:
        _fail_dead_local_trials(study, settings, report)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
        trials = study.get_trials(deepcopy=False)
        done = sum(t.state == TrialState.COMPLETE for t in trials)
        pending = sum(t.state in (TrialState.RUNNING, TrialState.WAITING) for t in trials)
        if done >= settings.n_trials:
            return report
        if done + pending >= settings.n_trials:
            time.sleep(settings.poll_s)  # wait: a pending trial may finish, or die and come back as WAITING
            continue
        finished: list[Any] = []
        study.optimize(
            objective,
            n_trials=1,
            catch=(RuntimeError,),
            callbacks=[lambda _study, frozen, acc=finished: acc.append(frozen)],
        )
        last = finished[-1] if finished else None
        report.trials += 1
        if last is not None and last.user_attrs.get("over_budget"):
            report.over_budget += 1
        failures = failures + 1 if last is not None and last.state == TrialState.FAIL else 0
        if failures >= 3:
            raise SearchError("error: search: 3 trials in a row failed; see result.json in the run store")


def spawn_workers(settings: SearchSettings, workers: int, log_dir: Path | None = None) -> list[subprocess.Popen]:
    """Start `workers` worker processes (`python -m scalec.runtime.studies.search SETTINGS_JSON`)."""
    out = Path(settings.out)
    prepare_study(settings)
    cfg = out / "search_settings.json"
    log_dir = log_dir or out
    procs = []
    for i in range(workers):
        log = open(log_dir / f"worker{i}.log", "w")  # noqa: SIM115 - handed to the child
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "scalec.runtime.studies.search", str(cfg), str(i)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
    return procs


@dataclass
class SearchResult:
    """The finished study: counted (COMPLETE) trials, best params and value."""

    study_name: str
    trials: list[dict[str, Any]]
    best_params: dict[str, float] | None
    best_value: float | None
    n_fail: int
    n_over_budget: int


def collect(settings: SearchSettings) -> SearchResult:
    """Summarise the study's trials (COMPLETE ones are the result; FAIL and over-budget listed as counts)."""
    import optuna
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=settings.study_name(), storage=make_storage(settings))
    rows, n_fail, n_over = [], 0, 0
    for t in study.get_trials(deepcopy=False):
        if t.state == TrialState.FAIL:
            n_fail += 1
        elif t.user_attrs.get("over_budget"):
            n_over += 1
        elif t.state == TrialState.COMPLETE:
            rows.append(
                {
                    "number": t.number,
                    "value": t.value,
                    "params": dict(t.params),
                    "status": t.user_attrs.get("status", "finished"),
                    "run": t.user_attrs.get("run"),
                }
            )
    finite = [r for r in rows if r["value"] is not None and math.isfinite(r["value"])]
    best = min(finite, key=lambda r: r["value"]) if finite else None
    return SearchResult(
        settings.study_name(),
        rows,
        best["params"] if best else None,
        best["value"] if best else None,
        n_fail,
        n_over,
    )


def run_search(settings: SearchSettings, workers: int = 1) -> SearchResult:
    """Run the study with `workers` processes (in-process when 1) and summarise it."""
    if workers <= 1:
        prepare_study(settings)
        run_worker(settings)
    else:
        procs = spawn_workers(settings, workers)
        codes = [p.wait() for p in procs]
        if all(c != 0 for c in codes):
            raise SearchError(f"error: search: every worker failed; see {settings.out}/worker*.log")
    return collect(settings)


if __name__ == "__main__":
    run_worker(SearchSettings.from_json(Path(sys.argv[1]).read_text()), int(sys.argv[2]) if len(sys.argv) > 2 else 0)
