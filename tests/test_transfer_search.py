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
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna")

from scalec.runtime.studies.search import collect, run_search, spawn_workers  # noqa: E402 (after importorskip)
from scalec.runtime.studies.search_samplers import TrustRegionSampler, make_sampler  # noqa: E402
from scalec.runtime.studies.search_settings import Dim, SearchError, SearchSettings  # noqa: E402
from scalec.runtime.studies.search_storage import make_storage, release_storage  # noqa: E402
from tests.conftest import install_run_module  # noqa: E402

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
    return install_run_module(tmp_path, monkeypatch, "synthetic_objective", OBJECTIVE, "evals.log")


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


def trials_of(s: SearchSettings) -> list:
    """The study's trials, read on a storage whose connections are closed at once (the tests share one PostgreSQL
    server; pools left to the GC ran it out of clients)."""
    storage = make_storage(s)
    try:
        return optuna.load_study(study_name=s.study_name(), storage=storage).get_trials(deepcopy=False)
    finally:
        release_storage(storage)


def assert_no_lost_or_double_counted(s: SearchSettings, log: Path, victim: int) -> None:
    trials = trials_of(s)
    states = Counter(t.state.name for t in trials)
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    assert len(complete) == s.n_trials  # exact budget: no trial lost, none counted twice
    assert states["RUNNING"] == 0 and states["WAITING"] == 0
    failed = [t for t in trials if t.state.name == "FAIL"]
    assert [t.user_attrs.get("worker", "").split(":")[1] == str(victim) for t in failed] == [True]
    retried = [t for t in complete if t.system_attrs.get("failed_trial") == failed[0].number]
    assert len(retried) == 1 and retried[0].params == failed[0].params
    # the run of each counted trial finished exactly once; the victim's run was started twice
    ends = Counter(line.split()[2] for line in log.read_text().splitlines() if line.startswith("end"))
    runs = [t.user_attrs["run"] for t in complete]
    assert len(set(runs)) == len(runs) and all(ends[r] == 1 for r in runs)
    assert collect(s).best_params is not None


def kill_one_worker_mid_trial(s: SearchSettings, log: Path, workers: int = 3) -> int:
    """Kill whichever worker starts a run first (a slow-starting worker may never get one)."""
    procs = spawn_workers(s, workers)
    by_pid = {p.pid: p for p in procs}
    deadline = time.monotonic() + 60
    victim = None
    while victim is None:
        assert time.monotonic() < deadline, "no worker started a run"
        lines = log.read_text().splitlines() if log.exists() else []
        victim = next((by_pid[int(x.split()[1])] for x in lines if x.startswith("start")), None)
        time.sleep(0.02)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    for p in procs:
        if p is not victim:
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


@pytest.fixture(scope="module")
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
    s = settings(tmp_path, n_trials=10, storage=postgres_url, study=f"pg-kill-test-{tmp_path.name}")
    victim = kill_one_worker_mid_trial(s, objective_env)
    assert_no_lost_or_double_counted(s, objective_env, victim)


# ---- kills at every point: the search finishes with exactly the budget of distinct runs ----------------------

DRIVER = """
import sys
from pathlib import Path
from scalec.runtime.studies.search import run_search
from scalec.runtime.studies.search_settings import SearchSettings

run_search(SearchSettings.from_json(Path(sys.argv[1]).read_text()), int(sys.argv[2]))
"""


def start_search(s: SearchSettings, workers: int, tag: str) -> subprocess.Popen:
    """`run_search` in its own process group (so the test can kill the search and all its workers at once)."""
    root = Path(s.out).parent
    (root / "driver.py").write_text(DRIVER)
    (root / "settings.json").write_text(s.to_json())
    with open(root / f"driver-{tag}.log", "w") as log:
        return subprocess.Popen(
            [sys.executable, str(root / "driver.py"), str(root / "settings.json"), str(workers)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def wait_for(what, proc: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not what():
        assert proc.poll() is None, "the search ended before the kill point"
        assert time.monotonic() < deadline, "kill point never reached"
        time.sleep(0.02)


def started(log: Path) -> list[str]:
    lines = log.read_text().splitlines() if log.exists() else []
    return list(dict.fromkeys(line.split()[2] for line in lines if line.startswith("start")))


def n_complete(s: SearchSettings) -> int:
    try:
        trials = trials_of(s)  # polled every 20 ms
    except KeyError:
        return 0
    return sum(t.state.name == "COMPLETE" for t in trials)


KILL_POINTS = {
    "first-trial": lambda s, log: len(started(log)) >= 1,
    "middle-trial": lambda s, log: len(started(log)) >= s.n_trials // 2 + 1,
    "last-trial": lambda s, log: len(started(log)) >= s.n_trials,
    "between-trials": lambda s, log: n_complete(s) >= s.n_trials // 2,
    "run-just-finished": lambda s, log: log.exists() and "end " in log.read_text(),
}


def assert_exact_budget(s: SearchSettings, log: Path) -> None:
    """n_trials COMPLETE trials of distinct runs, nothing left RUNNING or WAITING, every dead trial FAILed and
    retried exactly once with its parameters, and every counted run trained to its end."""
    trials = trials_of(s)
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    runs = [t.user_attrs["run"] for t in complete]
    assert len(runs) == s.n_trials and len(set(runs)) == s.n_trials, runs
    assert not [t.number for t in trials if t.state.name in ("RUNNING", "WAITING")]
    for f in (t for t in trials if t.state.name == "FAIL"):
        retries = [t for t in trials if t.system_attrs.get("failed_trial") == f.number]
        if set(f.params) == {d.name for d in s.dims}:
            assert len(retries) == 1 and retries[0].params == f.params, (f.number, retries)
        else:
            assert not retries  # killed before it chose all its parameters: no run to resume
    ends = Counter(line.split()[2] for line in log.read_text().splitlines() if line.startswith("end"))
    assert all(ends[r] >= 1 for r in runs)
    assert collect(s).best_params is not None and len(collect(s).trials) == s.n_trials


def kill_and_rerun(s: SearchSettings, log: Path, workers: int, point: str) -> None:
    proc = start_search(s, workers, "killed")
    wait_for(lambda: KILL_POINTS[point](s, log), proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    rerun = start_search(s, workers, "rerun")
    try:
        assert rerun.wait(timeout=120) == 0, (Path(s.out).parent / "driver-rerun.log").read_text()
    finally:
        if rerun.poll() is None:
            os.killpg(rerun.pid, signal.SIGKILL)
    assert_exact_budget(s, log)


@pytest.mark.slow  # each case spawns and kills worker processes (~3 s)
@pytest.mark.parametrize(("point", "workers"), [(p, w) for p in KILL_POINTS for w in (1, 2)], ids=lambda v: str(v))
def test_search_killed_at_any_point_reruns_to_the_exact_budget_journal(
    tmp_path, objective_env, monkeypatch, point, workers
):
    monkeypatch.setenv("SCALEC_TEST_SLEEP", "0.4")
    s = settings(tmp_path, n_trials=4, sampler="random", grace_period=2)
    kill_and_rerun(s, objective_env, workers, point)


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_search_killed_at_any_point_reruns_to_the_exact_budget_postgresql(
    tmp_path, objective_env, postgres_url, monkeypatch, point, workers
):
    monkeypatch.setenv("SCALEC_TEST_SLEEP", "0.4")
    s = settings(tmp_path, n_trials=4, sampler="random", storage=postgres_url, study=f"kill-{point}-{workers}")
    kill_and_rerun(s, objective_env, workers, point)


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(x) for x in path.read_text().split()] if path.exists() else []


@pytest.mark.slow  # spawns two workers and kills one
@pytest.mark.parametrize("storage", ["journal", "postgresql"])
def test_killing_one_of_two_workers_lets_the_search_finish(tmp_path, objective_env, monkeypatch, request, storage):
    """The second worker is killed mid-trial; its parent reaps it (no zombie that looks alive), the survivor
    retries its trial once, and the same `run_search` call finishes with the exact budget."""
    if not Path("/proc/self/task").is_dir():
        pytest.skip("needs /proc to find the worker processes")
    monkeypatch.setenv("SCALEC_TEST_SLEEP", "0.4")
    extra = {}
    if storage == "postgresql":
        extra = {"storage": request.getfixturevalue("postgres_url"), "study": f"one-worker-{tmp_path.name}"}
    s = settings(tmp_path, n_trials=5, sampler="random", **extra)
    proc = start_search(s, 2, "one")
    try:
        wait_for(lambda: len(children(proc.pid)) == 2, proc)
        victim = children(proc.pid)[1]
        wait_for(lambda: f"start {victim} " in (objective_env.read_text() if objective_env.exists() else ""), proc)
        os.kill(victim, signal.SIGKILL)
        assert proc.wait(timeout=120) == 0, (Path(s.out).parent / "driver-one.log").read_text()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert_exact_budget(s, objective_env)
    failed = [t for t in trials_of(s) if t.state.name == "FAIL"]
    assert [t.user_attrs["worker"].split(":")[1] for t in failed] == [str(victim)]


@pytest.mark.slow
def test_a_budget_of_one_runs_the_enqueued_default_point(tmp_path, objective_env):
    """--trials 1: the default point is enqueued WAITING; a free worker must run it (it used to wait forever)."""
    s = settings(tmp_path, n_trials=1, sampler="random")
    proc = start_search(s, 1, "one-trial")
    try:
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    result = collect(s)
    assert [t["params"] for t in result.trials] == [{"eta": 2**-8, "lr[mlp.down]": 1.0}]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("sqlite:////nonexistent/dir/x.db", r"cannot connect \(.*unable to open database file"),
        ("postgresql://nobody@127.0.0.1:1/db", "cannot connect"),
    ],
)
def test_unreachable_storage_is_one_line(tmp_path, url, message):
    if url.startswith("postgresql"):
        pytest.importorskip("psycopg2")
    with pytest.raises(SearchError, match=message) as info:
        make_storage(settings(tmp_path, storage=url))
    assert "\n" not in str(info.value) and str(info.value).startswith(f"error: --storage {url}: ")


def test_a_repeated_point_is_not_counted_twice(tmp_path, objective_env):
    """A trial whose run is already COMPLETE (a replayed sampler point, a second retry) reuses the stored result;
    it must not count: the budget is distinct runs (it used to be 2 runs for a budget of 3)."""
    from scalec.runtime.studies.search_worker import run_worker

    first = settings(tmp_path, n_trials=2, sampler="random", study="repeat")
    run_search(first)
    study = optuna.load_study(study_name="repeat", storage=make_storage(first))
    study.enqueue_trial(study.trials[1].params)
    run_worker(settings(tmp_path, n_trials=3, sampler="random", study="repeat"))
    trials = optuna.load_study(study_name="repeat", storage=make_storage(first)).trials
    runs = [t.user_attrs["run"] for t in trials if t.state.name == "COMPLETE"]
    assert len(runs) == 3 and len(set(runs)) == 3
    assert [t.number for t in trials if t.user_attrs.get("duplicate")] == [2]


def test_released_storage_holds_no_connections(tmp_path):
    """`release_storage` closes an RDB storage's pooled connections at once (a poll that opened a storage each time
    and left them to the GC ran the CI's PostgreSQL out of clients)."""
    s = settings(tmp_path, storage=f"sqlite:///{tmp_path / 'study.db'}")
    storage = make_storage(s)
    optuna.create_study(storage=storage, study_name="s").get_trials(deepcopy=False)
    pool = storage.engine.pool
    assert pool.checkedin() >= 1  # the read left its connection in the pool
    release_storage(storage)
    assert storage.engine.pool.checkedin() == 0
