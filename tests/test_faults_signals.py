"""Fault injection: SIGTERM, SIGHUP or SIGKILL sent to a multi-worker search's parent alone (not its process group,
as `kill PID` and a closed terminal do) ends every worker; no worker outlives the parent, and a rerun finishes the
budget with exactly the planned number of distinct runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna")

from scalec.runtime.studies.liveness import pid_alive  # noqa: E402
from scalec.runtime.studies.search_settings import Dim, SearchSettings  # noqa: E402
from scalec.runtime.studies.search_storage import make_storage  # noqa: E402
from tests.conftest import install_run_module  # noqa: E402

OBJECTIVE = '''
import os, time
from pathlib import Path

def slow_bowl(config, out_dir):
    """A trial that takes SCALEC_TEST_SLEEP seconds; logs `start PID KEY` and `end PID KEY`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    log = Path(os.environ["SCALEC_TEST_LOG"])
    with open(log, "a") as f:
        f.write(f"start {os.getpid()} {out_dir.parent.name}\\n")
    time.sleep(float(os.environ.get("SCALEC_TEST_SLEEP", "0")))
    with open(log, "a") as f:
        f.write(f"end {os.getpid()} {out_dir.parent.name}\\n")
    return {"status": "finished", "final_val_loss": (config["hp"]["eta"] - 0.01) ** 2}
'''

DRIVER = """
import sys
from pathlib import Path
from scalec.runtime.studies.search import run_search
from scalec.runtime.studies.search_settings import SearchSettings

try:
    run_search(SearchSettings.from_json(Path(sys.argv[1]).read_text()), int(sys.argv[2]))
except KeyboardInterrupt as exc:
    print("stopped by", exc, flush=True)
    sys.exit(3)
"""


@pytest.fixture
def search(tmp_path, monkeypatch):
    log = install_run_module(tmp_path, monkeypatch, "slow_objective", OBJECTIVE, "evals.log")
    (tmp_path / "driver.py").write_text(DRIVER)
    settings = SearchSettings(
        [Dim("eta", 1e-3, 1e-1)], {"rule": "completedp"}, 4, str(tmp_path / "out"), sampler="random",
        run_fn="slow_objective:slow_bowl", poll_s=0.2, grace_period=3,
    )  # fmt: skip
    (tmp_path / "settings.json").write_text(settings.to_json())
    return settings, log


def _start(tmp_path: Path, tag: str) -> subprocess.Popen:
    with open(tmp_path / f"driver-{tag}.log", "w") as out:
        return subprocess.Popen(
            [sys.executable, str(tmp_path / "driver.py"), str(tmp_path / "settings.json"), "2"],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip


def _worker_pids(log: Path, n: int, proc: subprocess.Popen, timeout: float = 60) -> set[int]:
    deadline = time.monotonic() + timeout
    while True:
        lines = log.read_text().splitlines() if log.exists() else []
        pids = {int(line.split()[1]) for line in lines if line.startswith("start")}
        if len(pids) >= n:
            return pids
        assert proc.poll() is None and time.monotonic() < deadline, "the workers never started a trial"
        time.sleep(0.05)


def _all_dead(pids: set[int], timeout: float = 15) -> bool:
    deadline = time.monotonic() + timeout
    while any(pid_alive(p) for p in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _complete_runs(settings: SearchSettings) -> list[str]:
    study = optuna.load_study(study_name=settings.study_name(), storage=make_storage(settings))
    return [t.user_attrs["run"] for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGKILL], ids=["TERM", "HUP", "KILL"])
def test_a_signal_to_the_search_parent_ends_every_worker_and_a_rerun_finishes_the_budget(
    tmp_path, search, monkeypatch, sig
):
    settings, log = search
    monkeypatch.setenv("SCALEC_TEST_SLEEP", "30")  # the workers are mid-trial when the parent is signalled
    proc = _start(tmp_path, "signalled")
    try:
        workers = _worker_pids(log, 2, proc)
        os.kill(proc.pid, sig)  # the parent alone, not its group
        proc.wait(timeout=30)
        assert _all_dead(workers), f"orphaned workers survived {sig.name}"
        if sig != signal.SIGKILL:
            assert proc.returncode == 3 and sig.name in (tmp_path / "driver-signalled.log").read_text()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    monkeypatch.setenv("SCALEC_TEST_SLEEP", "0")
    rerun = _start(tmp_path, "rerun")
    try:
        assert rerun.wait(timeout=120) == 0, (tmp_path / "driver-rerun.log").read_text()
    finally:
        if rerun.poll() is None:
            os.killpg(rerun.pid, signal.SIGKILL)
    runs = _complete_runs(settings)
    assert len(runs) == settings.n_trials and len(set(runs)) == settings.n_trials


def test_a_worker_started_by_a_parent_that_is_already_gone_ends_at_once(tmp_path):
    """die_with_parent with the wrong parent pid (the parent died before the worker armed the request)."""
    code = "import time; from scalec.runtime.studies import liveness; liveness.die_with_parent(1); time.sleep(30)"
    proc = subprocess.run([sys.executable, "-c", code], timeout=30, capture_output=True)
    assert proc.returncode == -signal.SIGTERM
