"""Checkpoints: an interrupted run resumes bit-identically on CPU; corrupt checkpoints never destroy files."""

from __future__ import annotations

import json

import pytest

from scalec.runtime.trainer.checkpoint import CheckpointError, load_checkpoint
from scalec.runtime.trainer.train_config import TrainConfig
from tests.tiny_runs import write_corpus, write_tiny_rule


@pytest.fixture(scope="module")
def rule_path(tmp_path_factory):
    return str(write_tiny_rule(tmp_path_factory.mktemp("rules"), "CompleteP"))


@pytest.fixture(scope="module")
def rules(rule_path):
    import scalec

    return scalec.load(rule_path)


@pytest.fixture
def corpus(tmp_path, monkeypatch):
    monkeypatch.setenv("SCALEC_CACHE", str(tmp_path / "cache"))
    return str(write_corpus(tmp_path, words=("all", "the", "worlds", "a", "stage"), seed=1))


def tiny(corpus: str, out: str, **kw) -> TrainConfig:
    settings = {
        "rule": "tiny.scale",
        "width": 32,
        "depth": 2,
        "head_dim": 16,
        "seq_len": 32,
        "batch": 4 * 32,
        "steps": 8,
        "eval_every": 4,
        "checkpoint_every": 3,
        "eval_batches": 2,
        "corpus": corpus,
        "progress": False,
        "out_dir": out,
    }
    return TrainConfig(**{**settings, **kw})


def _records(path) -> list[dict]:
    return [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]


class Interrupt(Exception):
    pass


def _interrupt_at(k: int):
    def on_step(step, record):
        if step == k:
            raise Interrupt

    return on_step


@pytest.mark.slow
def test_interrupted_run_resumes_bit_identically(tmp_path, corpus, rules):
    from scalec.runtime.trainer.train import train

    whole = train(tiny(corpus, str(tmp_path / "a")), rules=rules)
    with pytest.raises(Interrupt):
        train(tiny(corpus, str(tmp_path / "b")), rules=rules, on_step=_interrupt_at(5))  # checkpoint at 3
    assert load_checkpoint(tmp_path / "b" / "checkpoint.pt", 8).step == 3
    resumed = train(tiny(corpus, str(tmp_path / "b")), rules=rules)
    a, b = _records(tmp_path / "a"), _records(tmp_path / "b")
    assert [r["step"] for r in b] == [r["step"] for r in a]
    assert [r.get("train_loss") for r in b] == [r.get("train_loss") for r in a]
    assert [r.get("val_loss") for r in b] == [r.get("val_loss") for r in a]
    assert resumed.final_val_loss == whole.final_val_loss and resumed.steps == 8


@pytest.mark.slow
def test_finished_run_is_not_trained_again(tmp_path, corpus, rules):
    from scalec.runtime.trainer.train import train

    first = train(tiny(corpus, str(tmp_path / "a"), steps=2), rules=rules)
    calls = []
    again = train(tiny(corpus, str(tmp_path / "a"), steps=2), rules=rules, on_step=lambda s, r: calls.append(s))
    assert calls == [] and again.final_val_loss == first.final_val_loss


@pytest.mark.slow
def test_corrupt_checkpoint_is_one_line_and_destroys_nothing(tmp_path, corpus, rules):
    from scalec.runtime.trainer.train import train

    out = tmp_path / "run"
    with pytest.raises(Interrupt):
        train(tiny(corpus, str(out)), rules=rules, on_step=_interrupt_at(4))
    (out / "checkpoint.pt").write_bytes(b"not a checkpoint")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(CheckpointError) as exc:
        train(tiny(corpus, str(out)), rules=rules)
    assert "\n" not in str(exc.value) and "checkpoint" in str(exc.value)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
