"""Run dirs, caches and checkpoints that do not fit: one line, no traceback, nothing run, nothing lost."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import torch
from typer.testing import CliRunner

from scalec.runtime.trainer.checkpoint import CheckpointError
from scalec.runtime.trainer.run_dir import RunDir
from scalec.runtime.trainer.train_config import TrainConfig
from tests.tiny_runs import write_corpus, write_tiny_rule


class Interrupt(Exception):
    pass


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A rule file and a corpus, and the settings of a 4-step run on them."""
    root = tmp_path_factory.mktemp("rundir")
    rule = write_tiny_rule(root)
    corpus = write_corpus(root)
    cfg = dict(rule=str(rule), width=32, depth=2, head_dim=16, seq_len=32, batch=128, steps=4, hp={"eta": 2**-6})
    cfg.update(corpus=str(corpus), device="cpu", progress=False, checkpoint_every=1)
    return root, cfg


@pytest.fixture(scope="module")
def template(setup):
    """An interrupted run of `setup`'s settings (checkpoint at step 2, no summary) to copy."""
    from scalec.runtime.trainer.train import train

    root, cfg = setup

    def stop(step, record):
        if step == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        train(TrainConfig(**cfg, out_dir=str(root / "template")), on_step=stop)
    return root / "template"


@pytest.fixture
def run(template, tmp_path):
    return shutil.copytree(template, tmp_path / "run")


def _args(setup, out) -> list[str]:
    root, cfg = setup
    sizes = ["--width", "32", "--depth", "2", "--head-dim", "16", "--seq-len", "32", "--batch", "128", "--steps", "4"]
    rest = ["--hp", "eta=2^-6", "--corpus", cfg["corpus"], "--device", "cpu", "--quiet", "--out", str(out)]
    return ["train", cfg["rule"], *sizes, *rest]


def _cli(setup, out, env: dict | None = None):
    from scalec.cli import app

    return CliRunner().invoke(app, _args(setup, out), env=env)


def _one_line(result, *needles: str) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 1 and len(lines) == 1 and "Traceback" not in result.output, result.output
    assert lines[0].startswith("error:") and all(n in lines[0] for n in needles), lines[0]
    return lines[0]


def _snapshot(folder) -> dict:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


class _Payload:
    def __init__(self, marker) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.slow
def test_crafted_checkpoint_runs_nothing_and_is_one_line(setup, run, tmp_path):
    from scalec.runtime.trainer.train import train

    marker = tmp_path / "PWNED"
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    state["extra"] = _Payload(marker)
    torch.save(state, run / "checkpoint.pt")
    before = _snapshot(run)
    with pytest.raises(CheckpointError, match="never unpickles") as exc:
        train(TrainConfig(**setup[1], out_dir=str(run)))
    assert "\n" not in str(exc.value)
    _one_line(_cli(setup, run), "checkpoint", "unreadable")
    assert not marker.exists() and _snapshot(run) == before


@pytest.mark.slow
@pytest.mark.parametrize(
    "change, needle",
    [
        (lambda s: s.pop("rng"), "missing rng"),
        (lambda s: s.pop("step"), "missing step"),
        (lambda s: s.pop("extra"), "missing extra"),
        (lambda s: s["extra"].pop("wall_s"), "extra lacks"),
        (lambda s: s.update(step=5000), "at step 5000, past this run's 4 steps"),
        (lambda s: s.update(step="3"), "not a step count"),
        (lambda s: s["rng"].pop("numpy"), "rng states"),
    ],
    ids=["no-rng", "no-step", "no-extra", "no-wall", "step-5000", "step-text", "no-numpy-rng"],
)
def test_checkpoint_that_does_not_fit_is_one_line_and_deletes_nothing(setup, run, change, needle):
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    change(state)
    torch.save(state, run / "checkpoint.pt")
    before = _snapshot(run)
    _one_line(_cli(setup, run), "checkpoint", needle, "move it away")
    assert _snapshot(run) == before


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, content, needle",
    [
        ("summary.json", b"[]", "not a run summary"),
        ("summary.json", b"null", "not a run summary"),
        ("summary.json", None, "final_val_loss: 'low' is not a number"),
        ("summary.json", "finished-5000", "finished after 5000 steps, but this run has 4"),
        ("config.json", b"[]", "not a training config"),
        ("config.json", b"null", "not a training config"),
        ("config.json", b"\xff\xfe\x00binary", "unreadable"),
        ("metrics.jsonl", b'{"step": 0, "val_loss": 5.5}\n{"step": "x"}\n{"step": 1}\n', "metrics.jsonl:2"),
    ],
    ids=["summary-list", "summary-null", "summary-str-loss", "summary-5000", "config-list", "config-null", "bin", "m"],
)
def test_run_file_that_does_not_fit_is_one_line_and_nothing_is_lost(setup, run, name, content, needle):
    summary = {"status": "finished", "final_val_loss": 1.0, "best_val_loss": 1.0, "steps": 4, "tokens": 512}
    summary.update(tokens_per_s=1.0, mfu=None, wall_s=1.0)
    if content is None:
        content = json.dumps({**summary, "final_val_loss": "low"}).encode()
    elif content == "finished-5000":
        content = json.dumps({**summary, "steps": 5000}).encode()
    (run / name).write_bytes(content)
    before = _snapshot(run)
    _one_line(_cli(setup, run), name, needle)
    assert _snapshot(run) == before


@pytest.mark.slow
def test_out_that_cannot_hold_a_run_is_one_line(setup, tmp_path):
    (tmp_path / "file").write_text("keep me")
    _one_line(_cli(setup, tmp_path / "file"), "is a file")
    _one_line(_cli(setup, tmp_path / "file" / "run"), "lies under", "which is a file")
    assert (tmp_path / "file").read_text() == "keep me"
    _one_line(_cli(setup, "/sys"), "not a writable folder")  # sysfs: read-only, even for root
    _one_line(_cli(setup, "/sys/scalec-test-run"), "not a writable folder")
    if os.geteuid() != 0:  # root writes through permission bits
        (tmp_path / "ro").mkdir(mode=0o555)
        _one_line(_cli(setup, tmp_path / "ro" / "run"), "not a writable folder")


@pytest.mark.slow
def test_second_training_process_on_a_run_dir_is_refused(setup, run):
    with RunDir.open(run):  # a real flock, held through another open file description, as another process would
        _one_line(_cli(setup, run), "in use by another training process", f"pid {os.getpid()}")
    result = _cli(setup, run)  # released: the run resumes and finishes
    assert result.exit_code == 0 and "finished" in result.output, result.output


@pytest.mark.slow
def test_unusable_corpus_cache_or_prepared_folder_is_one_line(setup, tmp_path):
    (tmp_path / "cache-file").write_text("")
    _one_line(_cli(setup, tmp_path / "a", env={"SCALEC_CACHE": str(tmp_path / "cache-file")}), "SCALEC_CACHE")
    _one_line(_cli(setup, tmp_path / "b", env={"SCALEC_CACHE": "/sys/scalec-cache"}), "SCALEC_CACHE")
    from scalec.runtime.trainer.data import prepare_corpus

    folder = prepare_corpus(setup[1]["corpus"], tmp_path / "cache")
    (folder / "meta.json").write_text('{"vocab": 256, "train_bytes": "many"}')
    from scalec.cli import app

    args = _args(setup, tmp_path / "c")
    args[args.index("--corpus") + 1] = str(folder)
    _one_line(CliRunner().invoke(app, args), "meta.json", "prepare the corpus again")
    assert not (tmp_path / "a").exists() and not (tmp_path / "c").exists()  # refused runs leave no run dir
