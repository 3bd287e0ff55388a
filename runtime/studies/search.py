"""Optuna search over a rule's per-module multipliers and global HPs, shared by many worker processes.

This file starts and supervises a search: `prepare_study` creates the study and enqueues the rule's default
point, `spawn_workers` starts worker processes (`python -m scalec.runtime.studies.search SETTINGS_JSON [K]`,
which is also how workers on other machines join), `run_search` runs them and reaps each one that exits, and
`collect` summarises the study. The pieces: `search_settings` (what a search is), `search_samplers`,
`search_storage` (journal file or RDB URL), `search_worker` (the budget and dead-trial cleanup).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scalec.errors import ScalecError
from scalec.redact import PASSWORD_ENV, mask_secrets, password_of
from scalec.runtime.atomic_io import write_text_atomic
from scalec.runtime.studies.liveness import die_with_parent, signals_raise
from scalec.runtime.studies.search_settings import SearchError, SearchSettings
from scalec.runtime.studies.search_storage import make_storage, open_study, release_storage
from scalec.runtime.studies.search_worker import ProgressFn, counted_runs, run_worker

PARENT_ENV = "SCALEC_SEARCH_PARENT"  # set for the workers `spawn_workers` starts: the pid they die with


def prepare_study(settings: SearchSettings) -> Any:
    """Create the study (and its tables) once, enqueueing the rule's default point as the first trial, and write
    `<out>/search_settings.json` (what workers on other machines run)."""
    out = Path(settings.out)
    if out.exists() and not out.is_dir():
        raise SearchError(f"error: --out {out} is a file; pass a folder as --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SearchError(f"error: --out {out}: cannot write the search dir ({exc.strerror or exc})") from None
    write_text_atomic(out / "search_settings.json", settings.to_json() + "\n", fix="pass a writable --out")
    study = open_study(settings).study
    defaults = {d.name: d.default for d in settings.dims if d.default is not None and d.low <= d.default <= d.high}
    if not study.trials and len(defaults) == len(settings.dims):
        study.enqueue_trial(defaults, skip_if_exists=True)
    return study


def spawn_workers(settings: SearchSettings, workers: int, log_dir: Path | None = None) -> list[subprocess.Popen]:
    """Prepare the study and start `workers` worker processes, logging to `<log_dir>/worker<k>.log`."""
    out = Path(settings.out)
    prepare_study(settings)
    cfg = out / "search_settings.json"
    log_dir = log_dir or out
    env = {**os.environ, PARENT_ENV: str(os.getpid())}  # the worker dies with this process
    password = password_of(settings.storage)
    if password is not None:  # search_settings.json holds the URL without it
        env[PASSWORD_ENV] = password
    procs = []
    for i in range(workers):
        with open(log_dir / f"worker{i}.log", "w") as log:  # the child keeps its own copy of the descriptor
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "scalec.runtime.studies.search", str(cfg), str(i)],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                )
            )
    return procs


def supervise(settings: SearchSettings, procs: list[subprocess.Popen], progress: ProgressFn | None = None) -> None:
    """Wait for the workers, reaping each as it exits (a killed worker must not linger as a zombie whose pid
    still looks alive, or the others never retry its trial); report progress from the study meanwhile. On any
    exception (Ctrl-C) the workers are terminated."""
    study = None
    try:
        running = list(procs)
        while running:
            running = [p for p in running if p.poll() is None]
            if progress is not None:
                study = study or _load(settings)
                progress(len(counted_runs(study.get_trials(deepcopy=False))), settings.n_trials)
            if running:
                time.sleep(min(settings.poll_s, 0.5))
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    if all(p.returncode != 0 for p in procs):
        raise SearchError(f"error: search: every worker failed; see {settings.out}/worker*.log")


def _load(settings: SearchSettings, storage: Any = None) -> Any:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.load_study(study_name=settings.study_name(), storage=storage or make_storage(settings))


@dataclass
class SearchResult:
    """The finished study: counted (COMPLETE) trials, best params and value."""

    study_name: str
    trials: list[dict[str, Any]]
    best_params: dict[str, float] | None
    best_value: float | None
    n_fail: int
    n_over_budget: int
    n_duplicate: int = 0


def collect(settings: SearchSettings) -> SearchResult:
    """Summarise the study's trials (COMPLETE ones are the result; FAIL, over-budget and duplicates counted)."""
    from optuna.trial import TrialState

    rows, n_fail, n_over, n_dup = [], 0, 0, 0
    storage = make_storage(settings)
    try:
        trials = _load(settings, storage).get_trials(deepcopy=False)
    finally:
        release_storage(storage)
    for t in trials:
        if t.state == TrialState.FAIL:
            n_fail += 1
        elif t.user_attrs.get("over_budget"):
            n_over += 1
        elif t.user_attrs.get("duplicate"):
            n_dup += 1
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
        n_dup,
    )


def run_search(settings: SearchSettings, workers: int = 1, progress: ProgressFn | None = None) -> SearchResult:
    """Run the study with `workers` processes (in-process when 1) and summarise it."""
    with signals_raise():  # SIGTERM / SIGHUP stop the workers on the way out, as Ctrl-C does
        if workers <= 1:
            prepare_study(settings)
            run_worker(settings, progress=progress)
        else:
            supervise(settings, spawn_workers(settings, workers), progress)
    return collect(settings)


def main(argv: list[str]) -> int:
    """Worker entry point: `python -m scalec.runtime.studies.search SETTINGS_JSON [WORKER_INDEX]`."""
    parent = os.environ.pop(PARENT_ENV, None)
    if parent is not None and parent.isdigit():
        die_with_parent(int(parent))  # started by `scalec search`: never outlive it
    try:
        path = Path(argv[0])
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise SearchError(
                f"error: {path} is unreadable ({exc.strerror if isinstance(exc, OSError) else exc}); pass the "
                "search_settings.json a search wrote"
            ) from None
        run_worker(SearchSettings.from_json(text, str(path)), int(argv[1]) if len(argv) > 1 else 0)
    except ScalecError as exc:
        print(mask_secrets(str(exc)), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
