"""The search budget counts runs TRAINED, not only runs counted at the end (issue 23, item 10): each of the two
budget checks in runtime/studies/search_worker.py keeps a run from being trained or counted past the budget."""

from __future__ import annotations

import pytest

optuna = pytest.importorskip("optuna")

from scalec.runtime.studies import search_worker  # noqa: E402 (after importorskip)
from scalec.runtime.studies.search import run_search  # noqa: E402
from scalec.runtime.studies.search_settings import Dim, SearchSettings  # noqa: E402
from scalec.runtime.studies.search_storage import make_storage  # noqa: E402

DIMS = [Dim("eta", 2**-12, 2**-2, True, 2**-8)]


def _settings(tmp_path, n_trials: int) -> SearchSettings:
    return SearchSettings(
        dims=DIMS,
        fixed={"rule": "mup", "width": 64},
        n_trials=n_trials,
        out=str(tmp_path / "out"),
        sampler="random",
        study="budget",
        run_fn="unused:unused",  # replaced below: the test counts what is trained
        poll_s=0.05,
        startup_trials=1,
    )


@pytest.fixture
def trained(monkeypatch) -> list[float]:
    """The eta of every run the workers train (the run function is the test's)."""
    runs: list[float] = []

    def run_fn(config, out_dir):
        runs.append(config["hp"]["eta"])
        return {"status": "finished", "final_val_loss": 2.0 + abs(config["hp"]["eta"] - 2**-7)}

    monkeypatch.setattr(search_worker, "load_run_fn", lambda _path: run_fn)
    return runs


def _complete(s: SearchSettings) -> list:
    study = optuna.load_study(study_name=s.study, storage=make_storage(s))
    return [t for t in study.trials if t.state.name == "COMPLETE"]


def test_a_waiting_trial_past_the_budget_is_pruned_before_it_trains(tmp_path, trained):
    s = _settings(tmp_path, 2)
    run_search(s)
    assert len(trained) == 2 and len(_complete(s)) == 2
    study = optuna.load_study(study_name=s.study, storage=make_storage(s))
    study.enqueue_trial({"eta": 2**-4})  # a new point, WAITING, after the budget is full
    search_worker.run_worker(s)
    assert len(trained) == 2, "a run was trained past the budget"
    last = optuna.load_study(study_name=s.study, storage=make_storage(s)).trials[-1]
    assert last.user_attrs.get("over_budget") and last.state.name == "PRUNED"


def test_a_run_whose_budget_filled_while_it_trained_is_not_counted(tmp_path, monkeypatch):
    """Another worker completes a run while this one trains: the budget (1) is full when it ends."""
    s = _settings(tmp_path, 1)

    def racing_run(config, out_dir):
        study = optuna.load_study(study_name=s.study, storage=make_storage(s))
        dist = {"eta": optuna.distributions.FloatDistribution(2**-12, 2**-2, log=True)}
        other = optuna.trial.create_trial(params={"eta": 2**-9}, distributions=dist, value=2.5, user_attrs={"run": "x"})
        study.add_trial(other)  # the other worker's run, COMPLETE
        return {"status": "finished", "final_val_loss": 2.0}

    monkeypatch.setattr(search_worker, "load_run_fn", lambda _path: racing_run)
    search_worker.run_worker(s)
    complete = _complete(s)
    assert [t.user_attrs["run"] for t in complete] == ["x"], "a run was counted past the budget"
