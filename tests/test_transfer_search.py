"""Optuna search: samplers find a synthetic optimum; several workers share one study (journal file or a real
PostgreSQL server started here) and a worker killed mid-trial loses no trial and double-counts none.

The trial objective is a cheap synthetic function (a bowl in log2 space, with a sleep so the kill lands
mid-trial), written to a module on the workers' PYTHONPATH, so these tests run in seconds without training.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna")

from scalec.runtime.studies.search import (  # noqa: E402 (after importorskip)
    Dim,
    SearchError,
    SearchSettings,
    TrustRegionSampler,
    collect,
    make_sampler,
    make_storage,
    run_search,
    spawn_workers,
)

OBJECTIVE = '''
import math, os, time
from pathlib import Path

def bowl(config, out_dir):
    """Minimum at eta = 2^-7, lr[mlp.down] = 2; 'diverges' for eta > 2^-3; logs each evaluation."""
    out_dir.mkdir(parents=True, exist_ok=True)
    log = Path(os.environ["SCALEC_TEST_LOG"])
    with open(log, "a") as f:
        f.write(f"start {os.getpid()} {out_dir.parent.name}\\n")
    time.sleep(float(os.environ.get("SCALEC_TEST_SLEEP", "0")))
    hp = config["hp"]
    x, y = math.log2(hp["eta"]), math.log2(hp.get("lr[mlp.down]", 1.0))
    with open(log, "a") as f:
        f.write(f"end {os.getpid()} {out_dir.parent.name}\\n")
    if x > -3:
        return {"status": "diverged", "final_val_loss": None}
    return {"status": "finished", "final_val_loss": 2 + 0.1 * (x + 7) ** 2 + 0.1 * (y - 1) ** 2}
'''

DIMS = [Dim("eta", 2**-12, 2**-2, True, 2**-8), Dim("lr[mlp.down]", 1 / 16, 16, True, 1.0)]


@pytest.fixture
def objective_env(tmp_path, monkeypatch):
    (tmp_path / "synthetic_objective.py").write_text(textwrap.dedent(OBJECTIVE))
    log = tmp_path / "evals.log"
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("SCALEC_TEST_LOG", str(log))
    return log


def settings(tmp_path: Path, **kw) -> SearchSettings:
    base = {
        "dims": DIMS,
        "fixed": {"rule": "completedp", "width": 64},
        "n_trials": 12,
        "out": str(tmp_path / "out"),
        "sampler": "tpe",
        "run_fn": "synthetic_objective:bowl",
        "heartbeat_interval": 1,
        "grace_period": 3,
        "poll_s": 0.2,
        "startup_trials": 4,
    }
    base.update(kw)
    return SearchSettings(**base)


HAS_CMAES = importlib.util.find_spec("cmaes") is not None


@pytest.mark.slow
@pytest.mark.parametrize(
    "sampler",
    [
        "tpe",
        pytest.param("cmaes", marks=pytest.mark.skipif(not HAS_CMAES, reason="cmaes not installed")),
        "random",
        "trust-region",
    ],
)
def test_every_sampler_improves_on_the_default_point(tmp_path, objective_env, sampler):
    s = settings(tmp_path, sampler=sampler, n_trials=24)
    result = run_search(s)
    assert len(result.trials) == 24 and result.n_fail == 0
    default = 2 + 0.1 * 1 + 0.1 * 1  # eta 2^-8, multiplier 1
    assert result.best_value < default
    # Every search records its settings: what workers elsewhere run to join, and what `collect` reads.
    assert SearchSettings.from_json((Path(s.out) / "search_settings.json").read_text()) == s


def test_trust_region_shrinks_after_stalls_and_recentres_on_improvement():
    tr = TrustRegionSampler(DIMS, patience=2, radius=0.25)

    class T:
        def __init__(self, n, v, eta):
            self.number, self.value, self.params = n, v, {"eta": eta, "lr[mlp.down]": 1.0}

    centre, r = tr.state([T(0, 3.0, 2**-9), T(1, 3.5, 2**-5), T(2, 3.4, 2**-4)])
    assert r == 0.125 and centre["eta"] == pytest.approx(DIMS[0].to_unit(2**-9))
    centre, r = tr.state([T(0, 3.0, 2**-9), T(1, 3.5, 2**-5), T(2, 3.4, 2**-4), T(3, 2.0, 2**-7)])
    assert r == 0.25 and centre["eta"] == pytest.approx(DIMS[0].to_unit(2**-7))


def test_unknown_sampler_and_storage_are_one_line_errors(tmp_path):
    with pytest.raises(SearchError, match="unknown; choose one of tpe"):
        make_sampler("bayes", DIMS)
    with pytest.raises(SearchError, match="expected an RDB URL"):
        make_storage(settings(tmp_path, storage="redis://localhost"))


def assert_no_lost_or_double_counted(s: SearchSettings, log: Path, victim: int) -> None:
    study = optuna.load_study(study_name=s.study_name(), storage=make_storage(s))
    states = Counter(t.state.name for t in study.trials)
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(complete) == s.n_trials  # exact budget: no trial lost, none counted twice
    assert states["RUNNING"] == 0 and states["WAITING"] == 0
    failed = [t for t in study.trials if t.state.name == "FAIL"]
    assert [t.user_attrs.get("worker", "").endswith(f":{victim}") for t in failed] == [True]
    retried = [t for t in complete if t.system_attrs.get("failed_trial") == failed[0].number]
    assert len(retried) == 1 and retried[0].params == failed[0].params
    # the run of each counted trial finished exactly once; the victim's run was started twice
    ends = Counter(line.split()[2] for line in log.read_text().splitlines() if line.startswith("end"))
    runs = [t.user_attrs["run"] for t in complete]
    assert len(set(runs)) == len(runs) and all(ends[r] == 1 for r in runs)
    assert collect(s).best_params is not None


def kill_one_worker_mid_trial(s: SearchSettings, log: Path, workers: int = 3) -> int:
    procs = spawn_workers(s, workers)
    deadline = time.monotonic() + 60
    victim = procs[0]
    while time.monotonic() < deadline:
        lines = log.read_text().splitlines() if log.exists() else []
        if any(line.startswith(f"start {victim.pid} ") for line in lines):
            break
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    for p in procs[1:]:
        assert p.wait(timeout=120) == 0, (Path(s.out) / "worker1.log").read_text()
    return victim.pid


@pytest.mark.slow
def test_killed_worker_with_journal_storage(tmp_path, objective_env, monkeypatch):
    monkeypatch.setenv("SCALEC_TEST_SLEEP", "0.3")
    s = settings(tmp_path, n_trials=10)
    victim = kill_one_worker_mid_trial(s, objective_env)
    assert_no_lost_or_double_counted(s, objective_env, victim)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def postgres_url():
    """A throwaway PostgreSQL server in a temp dir: the pip-installed `pgserver` binaries (dev extra), else the
    system's (apt-get install postgresql); skipped when neither can be started."""
    pytest.importorskip("psycopg2")
    try:
        import pgserver
    except ImportError:
        yield from _system_postgres()
        return
    root = Path(tempfile.mkdtemp(prefix="scalec-pg-"))
    try:
        server = pgserver.get_server(root, cleanup_mode="stop")
    except Exception as exc:  # pgserver raises its own and subprocess errors
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"could not start PostgreSQL with pgserver: {exc}")
    try:
        server.psql("CREATE DATABASE optuna;")
        yield f"postgresql://postgres@/optuna?host={root}"
    finally:
        server.cleanup()
        shutil.rmtree(root, ignore_errors=True)


def _system_postgres():
    bindir = (
        next((Path(p) for p in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)), None)
        if Path("/usr/lib/postgresql").is_dir()
        else None
    )
    initdb = shutil.which("initdb") or (str(bindir / "initdb") if bindir else None)
    pg_ctl = shutil.which("pg_ctl") or (str(bindir / "pg_ctl") if bindir else None)
    if not initdb or not pg_ctl or not Path(initdb).exists():
        pytest.skip("no PostgreSQL server: pip install pgserver (dev extra) or apt-get install postgresql")
    root = Path(tempfile.mkdtemp(prefix="scalec-pg-"))
    prefix: list[str] = []
    if os.geteuid() == 0:  # postgres refuses to run as root: run it as the postgres user
        runuser = shutil.which("runuser")
        try:
            import pwd

            pwd.getpwnam("postgres")
        except KeyError:
            runuser = None
        if runuser is None:
            shutil.rmtree(root)
            pytest.skip("running as root without a postgres user to start the server as")
        prefix = [runuser, "-u", "postgres", "--"]
        shutil.chown(root, "postgres")
        root.chmod(0o700)
    port = _free_port()
    data = root / "data"
    try:
        subprocess.run(
            [*prefix, initdb, "-D", str(data), "-A", "trust", "-U", "scalec", "--no-sync"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        subprocess.run(
            [
                *prefix,
                pg_ctl,
                "-D",
                str(data),
                "-l",
                str(root / "log"),
                "-w",
                "-t",
                "30",
                "-o",
                f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off",
                "start",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"could not start PostgreSQL: {exc}")
    try:
        import psycopg2

        conn = psycopg2.connect(host="127.0.0.1", port=port, user="scalec", dbname="postgres")
        conn.autocommit = True
        conn.cursor().execute("CREATE DATABASE optuna")
        conn.close()
        yield f"postgresql://scalec@127.0.0.1:{port}/optuna"
    finally:
        subprocess.run([*prefix, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], check=False, capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow
def test_killed_worker_with_postgresql_storage(tmp_path, objective_env, postgres_url, monkeypatch):
    monkeypatch.setenv("SCALEC_TEST_SLEEP", "0.3")
    s = settings(tmp_path, n_trials=10, storage=postgres_url, study="pg-kill-test")
    victim = kill_one_worker_mid_trial(s, objective_env)
    assert_no_lost_or_double_counted(s, objective_env, victim)
