"""A sweep's grid shared out among worker processes (`grid_study`), as search shares its trials: two workers against
the journal file and against a real PostgreSQL server claim each run once; a worker killed mid-run has its run
retried once, in the same run dir; the table is the one a single process makes.

The runs are a cheap synthetic function (with a sleep so a kill lands mid-run) in a module on the workers'
PYTHONPATH, so these tests take seconds, not trainings.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna")

from scalec.runtime.studies.grid_study import GridSettings, collect, prepare, run_grid  # noqa: E402
from scalec.runtime.studies.hp_grid import HPRange  # noqa: E402
from scalec.runtime.studies.run_store import RunStore  # noqa: E402
from scalec.runtime.studies.search_storage import make_storage  # noqa: E402
from scalec.runtime.studies.sweep import SweepSpec, rows_markdown, run_sweep, summarize, sweep_configs  # noqa: E402
from tests.conftest import install_run_module  # noqa: E402
from tests.test_transfer_search import postgres_url  # noqa: E402, F401 - fixture

RUNS = '''
import math, os, time
from pathlib import Path

def bowl(config, out_dir):
    """Loss 2 + 0.1 (log2 eta + 7)^2 + 0.01 seed; counts its starts in the run dir (a retry resumes there)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    starts = out_dir / "starts"
    attempt = int(starts.read_text()) + 1 if starts.exists() else 1
    starts.write_text(str(attempt))
    log = Path(os.environ["SCALEC_TEST_LOG"])
    with open(log, "a") as f:
        f.write(f"start {os.getpid()} {out_dir.parent.name}\\n")
    time.sleep(float(os.environ.get("SCALEC_TEST_SLEEP", "0")))
    with open(log, "a") as f:
        f.write(f"end {os.getpid()} {out_dir.parent.name}\\n")
    x = math.log2(config["hp"]["eta"])
    return {"status": "finished", "final_val_loss": 2 + 0.1 * (x + 7) ** 2 + 0.01 * config["seed"], "attempt": attempt}
'''


@pytest.fixture
def runs_env(tmp_path, monkeypatch):
    return install_run_module(tmp_path, monkeypatch, "synthetic_runs", RUNS, "runs.log")


def grid(tmp_path: Path, name: str, **kw) -> GridSettings:
    eta = HPRange("eta", "eta=2^-9..2^-5:3", low=2**-9, high=2**-5, count=3, scale="log")
    configs = sweep_configs(SweepSpec({"rule": "mup", "width": 32, "hp": {}, "seed": 0}, [eta], seeds=2))
    base = {"run_fn": "synthetic_runs:bowl", "heartbeat_interval": 1, "grace_period": 3, "poll_s": 0.2}
    return GridSettings(configs, str(tmp_path / name), **{**base, **kw})


def single_process_table(tmp_path: Path, settings: GridSettings) -> str:
    import synthetic_runs

    records = run_sweep(settings.configs, RunStore(tmp_path / "single"), synthetic_runs.bowl)
    return rows_markdown(summarize(records), ["eta"])


def ends(log: Path) -> Counter:
    return Counter(line.split()[2] for line in log.read_text().splitlines() if line.startswith("end"))


@pytest.mark.slow
@pytest.mark.parametrize("storage", ["journal", "postgresql"])
def test_two_workers_claim_each_run_once_and_make_the_single_process_table(
    tmp_path, runs_env, monkeypatch, request, storage
):
    monkeypatch.setenv("SCALEC_TEST_SLEEP", "0.2")
    extra = {}
    if storage == "postgresql":
        extra = {"storage": request.getfixturevalue("postgres_url"), "study": f"grid-{tmp_path.name}"}
    s = grid(tmp_path, "shared", **extra)
    records = run_grid(s, workers=2)
    assert [r.status for r in records] == ["finished"] * 6
    assert set(ends(runs_env).values()) == {1} and len(ends(runs_env)) == 6  # each run trained exactly once
    starters = {line.split()[1] for line in runs_env.read_text().splitlines() if line.startswith("start")}
    assert len(starters) == 2  # both workers took runs
    assert rows_markdown(summarize(records), ["eta"]) == single_process_table(tmp_path, s)


def _kill_first_worker_mid_run(s: GridSettings, log: Path) -> int:
    prepare(s)
    cfg = Path(s.out) / "grid_settings.json"
    procs = [
        subprocess.Popen([sys.executable, "-m", "scalec.runtime.studies.grid_study", str(cfg), str(i)])
        for i in range(2)
    ]
    by_pid = {p.pid: p for p in procs}
    deadline, victim = time.monotonic() + 60, None
    while victim is None:
        assert time.monotonic() < deadline, "no worker started a run"
        lines = log.read_text().splitlines() if log.exists() else []
        victim = next((by_pid[int(x.split()[1])] for x in lines if x.startswith("start")), None)
        time.sleep(0.02)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    survivor = next(p for p in procs if p is not victim)
    assert survivor.wait(timeout=120) == 0
    return victim.pid


@pytest.mark.slow
@pytest.mark.parametrize("storage", ["journal", "postgresql"])
def test_a_killed_workers_run_is_retried_once_and_resumed(tmp_path, runs_env, monkeypatch, request, storage):
    monkeypatch.setenv("SCALEC_TEST_SLEEP", "0.4")
    extra = {}
    if storage == "postgresql":
        extra = {"storage": request.getfixturevalue("postgres_url"), "study": f"grid-kill-{tmp_path.name}"}
    s = grid(tmp_path, "killed", **extra)
    victim = _kill_first_worker_mid_run(s, runs_env)
    records = collect(s)
    assert [r.status for r in records] == ["finished"] * 6
    killed = [line.split()[2] for line in runs_env.read_text().splitlines() if line.startswith(f"start {victim} ")]
    assert len(killed) == 1 and ends(runs_env)[killed[0]] == 1  # started twice (killed, retried), finished once
    resumed = [r for r in records if r.key == killed[0]]
    assert resumed[0].summary["attempt"] == 2  # the retry ran in the killed run's own dir
    study = optuna.load_study(study_name=s.search_settings().study_name(), storage=make_storage(s.search_settings()))
    failed = [t for t in study.trials if t.state.name == "FAIL"]
    assert [t.user_attrs["worker"].split(":")[1] for t in failed] == [str(victim)]
    retried = [t for t in study.trials if t.system_attrs.get("failed_trial") == failed[0].number]
    assert len(retried) == 1 and retried[0].state.name == "COMPLETE" and retried[0].params == failed[0].params
    assert rows_markdown(summarize(records), ["eta"]) == single_process_table(tmp_path, s)
