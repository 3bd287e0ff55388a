"""Fault injection: an input edited between a run and its resumption (the rule file, an ancestor of it, the
corpus) is never mixed into the run; a study retrains the edited configurations and keeps the old results."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from scalec.runtime.studies.run_store import RunStore
from scalec.runtime.trainer.run_inputs import InputHasher, corpus_sha256, file_sha256, rule_sha256
from tests.tiny_runs import RULE, write_corpus, write_tiny_rule

EDIT = "role hidden: lr *= m_N^2\n"  # the edit of the audit: a real change of the hidden layers' lr


class Interrupt(Exception):
    pass


@pytest.fixture
def setup(tmp_path):
    rule = write_tiny_rule(tmp_path)
    corpus = write_corpus(tmp_path)
    return rule, corpus


def _args(rule: Path, corpus: Path, out: Path) -> list[str]:
    sizes = ["--width", "32", "--depth", "2", "--head-dim", "16", "--seq-len", "32", "--batch", "128", "--steps", "4"]
    rest = ["--hp", "eta=2^-6", "--corpus", str(corpus), "--device", "cpu", "--quiet", "--out", str(out)]
    return ["train", str(rule), *sizes, *rest]


def _one_line(result, *needles: str) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 1 and len(lines) == 1 and "Traceback" not in result.output, result.output
    assert lines[0].startswith("error:") and all(n in lines[0] for n in needles), lines[0]
    return lines[0]


def _interrupted_run(rule: Path, corpus: Path, out: Path) -> None:
    """A 4-step run stopped after its step-2 checkpoint (as a kill would leave it)."""
    from scalec.runtime.trainer.train import train
    from scalec.runtime.trainer.train_config import TrainConfig

    cfg = TrainConfig(
        rule=str(rule), width=32, depth=2, head_dim=16, seq_len=32, batch=128, steps=4, hp={"eta": 2**-6},
        corpus=str(corpus), device="cpu", progress=False, checkpoint_every=1, out_dir=str(out),
    )  # fmt: skip

    def stop(step, record):
        if step == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        train(cfg, on_step=stop)


def _snapshot(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.name != ".lock"}


@pytest.mark.slow
def test_resume_after_the_rule_file_is_edited_is_refused_and_nothing_changes(setup, tmp_path):
    rule, corpus = setup
    out = tmp_path / "run"
    _interrupted_run(rule, corpus, out)
    recorded = json.loads((out / "config.json").read_text())
    assert recorded["corpus_sha256"] == hashlib.sha256(corpus.read_bytes()).hexdigest()
    before = _snapshot(out)
    with rule.open("a") as f:
        f.write(EDIT)
    from scalec.cli import app

    line = _one_line(CliRunner().invoke(app, _args(rule, corpus, out)), "the rule chain", str(rule), "--out")
    assert recorded["rule_sha256"][:12] in line
    assert _snapshot(out) == before  # plan.json, checkpoint, metrics: all as they were


@pytest.mark.slow
def test_resume_after_the_corpus_text_is_replaced_is_refused(setup, tmp_path):
    rule, corpus = setup
    out = tmp_path / "run"
    _interrupted_run(rule, corpus, out)
    before = _snapshot(out)
    corpus.write_bytes(corpus.read_bytes()[::-1])  # same size, other text
    from scalec.cli import app

    _one_line(CliRunner().invoke(app, _args(rule, corpus, out)), "the corpus", str(corpus), "changed since")
    assert _snapshot(out) == before


@pytest.mark.slow
def test_resume_with_unchanged_inputs_still_finishes(setup, tmp_path):
    rule, corpus = setup
    out = tmp_path / "run"
    _interrupted_run(rule, corpus, out)
    shutil.copy(corpus, tmp_path / "moved.txt")  # the corpus's path may change, its content may not
    from scalec.cli import app

    result = CliRunner().invoke(app, _args(rule, tmp_path / "moved.txt", out))
    assert result.exit_code == 0, result.output
    assert json.loads((out / "summary.json").read_text())["steps"] == 4


def test_rule_hash_covers_every_file_of_the_chain_and_the_overrides(tmp_path):
    parent = tmp_path / "parent.scale"
    parent.write_text(RULE.replace("TinyMuP", "ParentMuP"))
    child = tmp_path / "child.scale"
    child.write_text('parameterisation Child extends ParentMuP\n  "A child."\n')
    first = rule_sha256(str(child))
    assert rule_sha256(str(child)) == first
    assert rule_sha256(str(child), base={"n": 128}) != first
    assert rule_sha256(str(child), params={"alpha": "1/2"}) != first
    parent.write_text(parent.read_text() + EDIT)  # an ancestor edited, the leaf untouched
    assert rule_sha256(str(child)) != first


def test_corpus_hash_is_the_sha256_of_its_text_prepared_or_not(tmp_path):
    from scalec.runtime.trainer.data import prepare_corpus

    text = b"all the world's a stage, and all the men and women merely players " * 40
    src = tmp_path / "c.txt"
    src.write_bytes(text)
    expected = hashlib.sha256(text).hexdigest()
    assert corpus_sha256(str(src)) == expected
    assert corpus_sha256(str(prepare_corpus(src, tmp_path / "cache"))) == expected


def _fake_run(calls: list):
    def run_fn(config, out_dir):
        calls.append(config)
        return {"status": "finished", "final_val_loss": 1.0 + config["hp"]["eta"]}

    run_fn.key_inputs = InputHasher
    return run_fn


def test_study_retrains_an_edited_rule_and_keeps_the_old_results_apart(tmp_path):
    rule = write_tiny_rule(tmp_path)
    corpus = tmp_path / "c.txt"
    corpus.write_bytes(b"to be or not to be " * 100)
    configs = [{"rule": str(rule), "corpus": str(corpus), "hp": {"eta": e}, "seed": 0} for e in (0.01, 0.02)]
    calls: list = []
    first = [RunStore(tmp_path / "sw").run(c, _fake_run(calls)) for c in configs]
    assert len(calls) == 2
    again = [RunStore(tmp_path / "sw").run(c, _fake_run(calls)) for c in configs]
    assert len(calls) == 2 and all(r.reused for r in again)  # same inputs: nothing retrained
    old_files = {p: p.read_bytes() for p in (tmp_path / "sw").rglob("*.json")}
    with rule.open("a") as f:
        f.write(EDIT)
    edited = [RunStore(tmp_path / "sw").run(c, _fake_run(calls)) for c in configs]
    assert len(calls) == 4 and not any(r.reused for r in edited)
    assert {r.key for r in edited}.isdisjoint({r.key for r in first})
    assert all(p.read_bytes() == b for p, b in old_files.items())  # the old results are kept as they were
    corpus.write_bytes(b"something else entirely " * 100)
    RunStore(tmp_path / "sw").run(configs[0], _fake_run(calls))
    assert len(calls) == 5


def test_search_study_name_follows_the_inputs(tmp_path):
    from scalec.runtime.studies.search_settings import Dim, SearchSettings

    rule = write_tiny_rule(tmp_path)
    fixed = {"rule": str(rule), "width": 32, "depth": 2, "batch": 128, "steps": 4, "hp": {}}
    dims = [Dim("eta", 1e-3, 1e-1)]
    before = SearchSettings(dims, dict(fixed), 4, str(tmp_path / "s"))
    assert before.fixed["rule_sha256"] == rule_sha256(str(rule))
    assert SearchSettings.from_json(before.to_json()).study_name() == before.study_name()
    rule.write_text(RULE + EDIT)
    after = SearchSettings(dims, dict(fixed), 4, str(tmp_path / "s"))
    assert after.study_name() != before.study_name()
    assert SearchSettings.from_json(before.to_json()).fixed["rule_sha256"] == before.fixed["rule_sha256"]


def test_a_named_study_refuses_trials_of_edited_inputs(tmp_path):
    from scalec.runtime.studies.search_settings import Dim, SearchError, SearchSettings
    from scalec.runtime.studies.search_storage import open_study

    rule = write_tiny_rule(tmp_path)
    fixed = {"rule": str(rule), "width": 32, "depth": 2, "batch": 128, "steps": 4, "hp": {}}
    dims = [Dim("eta", 1e-3, 1e-1)]
    settings = SearchSettings(dims, dict(fixed), 4, str(tmp_path / "s"), study="mine")
    open_study(settings).study.enqueue_trial({"eta": 0.01})
    open_study(settings)  # the same inputs: fine
    rule.write_text(RULE + EDIT)
    with pytest.raises(SearchError, match="study mine holds trials of other inputs .the rule chain changed"):
        open_study(SearchSettings(dims, dict(fixed), 4, str(tmp_path / "s"), study="mine"))


def test_a_changed_model_file_refuses_the_resume(tmp_path):
    """The slot a `--model FILE.py:FUNC` fills: its hash is compared like the rule's and the corpus's."""
    from scalec.runtime.trainer.run_dir import RunDir
    from scalec.runtime.trainer.run_inputs import RunInputsError
    from scalec.runtime.trainer.train import _check_resumable
    from scalec.runtime.trainer.train_config import TrainConfig

    model = tmp_path / "model.py"
    model.write_text("def build(width, depth): ...\n")
    old = TrainConfig(steps=4, rule_sha256="r" * 64, corpus_sha256="c" * 64, model_sha256=file_sha256(model))
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text(json.dumps(old.to_dict()))
    _check_resumable(RunDir(tmp_path / "run"), old)  # the same inputs resume
    model.write_text("def build(width, depth): return None\n")
    new = TrainConfig(**{**old.to_dict(), "model_sha256": file_sha256(model)})
    with pytest.raises(RunInputsError, match="the model file --model .* changed since"):
        _check_resumable(RunDir(tmp_path / "run"), new)
    assert RunStore(tmp_path / "s").run_dir(old.to_dict()) != RunStore(tmp_path / "s").run_dir(new.to_dict())
