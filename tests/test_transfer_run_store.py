"""Run store and sweep engine: stable keys, finished/diverged runs never repeated, killed sweeps resume."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from scalec.runtime.studies.hp_grid import parse_hp_spec
from scalec.runtime.studies.run_store import RunStore, config_key
from scalec.runtime.studies.sweep import SweepSpec, best_row, rows_markdown, run_sweep, summarize, sweep_configs


def fake_run(config, out_dir: Path):
    """Quadratic bowl in log2(eta) with its minimum at 2^-7; diverges above 2^-4; logs each call."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "calls").write_text(str(int((out_dir / "calls").read_text() if (out_dir / "calls").exists() else 0) + 1))
    x = math.log2(config["hp"]["eta"])
    if x > -4:
        return {"status": "diverged", "final_val_loss": None}
    return {"status": "finished", "final_val_loss": 2.0 + 0.01 * (x + 7) ** 2 + 0.001 * config["seed"]}


def test_config_key_is_stable_under_key_order_and_int_float():
    a = {"rule": "mup", "width": 64, "hp": {"eta": 0.01, "lambda": 0.1}}
    b = {"hp": {"lambda": 0.1, "eta": 0.01}, "width": 64.0, "rule": "mup"}
    assert config_key(a) == config_key(b)
    assert config_key(a) != config_key({**a, "width": 128})


def test_finished_and_diverged_runs_are_not_repeated(tmp_path):
    store = RunStore(tmp_path)
    configs = sweep_configs(SweepSpec({"rule": "mup", "width": 32}, [parse_hp_spec("eta=2^-9..2^-3:4")], seeds=2))
    assert len(configs) == 8
    first = run_sweep(configs, store, fake_run)
    assert [r.status for r in first].count("diverged") == 2  # eta = 2^-3, two seeds
    assert all(math.isinf(r.loss) for r in first if r.status == "diverged")
    second = run_sweep(configs, store, fake_run)
    assert all(r.reused for r in second)
    assert all((store.run_dir(c) / "train" / "calls").read_text() == "1" for c in configs)


def test_failed_run_is_recorded_and_retried(tmp_path):
    store = RunStore(tmp_path)
    config = {"rule": "mup", "hp": {"eta": 0.01}, "seed": 0}

    def crash(config, out_dir):
        raise RuntimeError("out of memory")

    assert store.run(config, crash).status == "failed"
    assert "out of memory" in store.get(config).error
    assert store.run(config, fake_run).status == "finished"


def test_summary_groups_seeds_and_ranks_diverged_last(tmp_path):
    store = RunStore(tmp_path)
    configs = sweep_configs(SweepSpec({"rule": "mup"}, [parse_hp_spec("eta=2^-9..2^-3:4")], seeds=2))
    rows = summarize(run_sweep(configs, store, fake_run))
    assert [r.status for r in rows] == ["finished"] * 3 + ["diverged"]
    assert best_row(rows).hp["eta"] == 2**-7
    table = rows_markdown(rows, ["eta"])
    assert "| 2^-7 | 2.0005 ± 0.0007 | 2 | finished |" in table
    assert "| 2^-3 | inf | 2 | diverged |" in table


def test_random_sweep_draws_reproducible_points(tmp_path):
    spec = SweepSpec({"rule": "mup"}, [parse_hp_spec("eta=2^-10..2^-5")], random=5, sample_seed=1)
    assert sweep_configs(spec) == sweep_configs(spec)
    assert len({c["hp"]["eta"] for c in sweep_configs(spec)}) == 5


SCRIPT = """
import math, sys, time
from pathlib import Path
from scalec.runtime.studies.hp_grid import parse_hp_spec
from scalec.runtime.studies.run_store import RunStore
from scalec.runtime.studies.sweep import SweepSpec, run_sweep, sweep_configs

def slow_run(config, out_dir):
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(Path(sys.argv[1]) / "calls.log", "a") as f:
        f.write(str(config["hp"]["eta"]) + "\\n")
    time.sleep(float(sys.argv[2]))
    return {"status": "finished", "final_val_loss": 2 + (math.log2(config["hp"]["eta"]) + 7) ** 2}

configs = sweep_configs(SweepSpec({"rule": "mup"}, [parse_hp_spec("eta=2^-10..2^-4:7")]))
run_sweep(configs, RunStore(Path(sys.argv[1]) / "store"), slow_run)
"""


@pytest.mark.slow
def test_killed_sweep_resumes_without_repeating_finished_runs(tmp_path):
    script = tmp_path / "sweep_script.py"
    script.write_text(textwrap.dedent(SCRIPT))
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path), "0.4"], env=env)
    log = tmp_path / "calls.log"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not log.exists() or len(log.read_text().split()) < 3):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    calls_before = log.read_text().split()
    store = RunStore(tmp_path / "store")
    finished_before = {r.key for r in store.records()}
    assert 2 <= len(finished_before) < 7  # killed mid-sweep: some done, the one in flight has no result
    subprocess.run([sys.executable, str(script), str(tmp_path), "0"], env=env, check=True)
    calls = log.read_text().split()
    records = list(store.records())
    assert len(records) == 7 and all(r.status == "finished" for r in records)
    # every eta trained to completion exactly once; only the interrupted run was started twice
    assert len(calls) == 7 + len(calls_before) - len(finished_before)
    assert sorted(set(calls)) == sorted({str(r.config["hp"]["eta"]) for r in records})
    interrupted = [d for d in (tmp_path / "store" / "runs").iterdir() if d.name not in finished_before]
    assert all(json.loads((d / "result.json").read_text())["status"] == "finished" for d in interrupted)


def test_a_zombie_or_a_reused_pid_is_not_a_live_holder():
    """A killed child its parent has not reaped still answers kill(pid, 0); a pid the kernel gave to a new
    process has another start time. Neither may keep a run lock or a search trial."""
    import socket

    import pytest

    from scalec.runtime.studies.liveness import holder_alive, holder_id, pid_alive, start_token

    if not Path(f"/proc/{os.getpid()}/stat").exists():
        pytest.skip("needs /proc")
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 30
    while Path(f"/proc/{child.pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    os.kill(child.pid, 0)  # the zombie still "exists" to kill(0)
    assert not pid_alive(child.pid)
    child.wait()
    me = holder_id()
    assert holder_alive(me) is True
    host, pid, start = me.split(":")
    assert start == start_token(os.getpid())
    assert holder_alive(f"{host}:{pid}:{int(start) + 1}") is False  # same pid, another process
    assert holder_alive(f"not-{socket.gethostname()}:{pid}:{start}") is None  # another host: cannot tell
