"""Fault injection: a full disk (ENOSPC injected into the writer, or a real file-size limit) while a checkpoint,
plan.json or a study file is written is one line naming the file and the space it needs; the temporary file is
gone and the previous file is intact."""

from __future__ import annotations

import errno
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from scalec.runtime import atomic_io
from scalec.runtime.atomic_io import WriteError, write_bytes_atomic, write_json_atomic
from tests.tiny_runs import write_corpus, write_tiny_rule


def _full_disk_for(monkeypatch, name: str) -> None:
    """os.write raises ENOSPC for files whose temporary name holds `name` (everything else writes)."""
    real_open, real_write, doomed = os.open, os.write, set()

    def fake_open(path, flags, mode=0o777, **kw):
        fd = real_open(path, flags, mode, **kw)
        if name in os.fspath(path) and Path(path).name.endswith(".tmp"):
            doomed.add(fd)
        return fd

    def fake_write(fd, data):
        if fd in doomed:
            doomed.discard(fd)
            real_write(fd, bytes(data[: len(data) // 2]))  # half of it lands, then the disk is full
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(atomic_io.os, "open", fake_open)
    monkeypatch.setattr(atomic_io.os, "write", fake_write)


def test_full_disk_keeps_the_previous_file_and_removes_the_temporary(tmp_path, monkeypatch):
    target = tmp_path / "plan.json"
    write_json_atomic(target, {"version": 1})
    before = target.read_bytes()
    _full_disk_for(monkeypatch, "plan.json")
    with pytest.raises(WriteError) as err:
        write_bytes_atomic(target, b"x" * 3_000_000)
    text = str(err.value)
    assert "\n" not in text and str(target) in text and "No space left on device" in text
    assert "it needs 3.0 MB" in text and "free" in text
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["plan.json"]


def test_atomic_write_is_fsynced_before_the_rename(tmp_path, monkeypatch):
    order = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(atomic_io.os, "fsync", lambda fd: (order.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(atomic_io.os, "replace", lambda a, b: (order.append("replace"), real_replace(a, b))[1])
    write_bytes_atomic(tmp_path / "f.json", b"{}")
    assert order[:2] == ["fsync", "replace"]


@pytest.fixture
def setup(tmp_path):
    rule = write_tiny_rule(tmp_path)
    corpus = write_corpus(tmp_path)
    return rule, corpus


def _args(rule: Path, corpus: Path, out: Path, steps: int = 4) -> list[str]:
    sizes = ["--width", "32", "--depth", "2", "--head-dim", "16", "--seq-len", "32", "--batch", "128"]
    rest = ["--steps", str(steps), "--eval-every", "2", "--hp", "eta=2^-6", "--corpus", str(corpus)]
    return ["train", str(rule), *sizes, *rest, "--device", "cpu", "--quiet", "--out", str(out)]


def _one_line(result, *needles: str) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 1 and len(lines) == 1 and "Traceback" not in result.output, result.output
    assert lines[0].startswith("error:") and all(n in lines[0] for n in needles), lines[0]
    return lines[0]


@pytest.mark.slow
def test_full_disk_at_the_second_checkpoint_keeps_the_first_and_resumes(setup, tmp_path, monkeypatch):
    from scalec.cli import app
    from scalec.runtime.trainer import checkpoint

    rule, corpus = setup
    out = tmp_path / "run"
    real_write, writes = checkpoint.write_bytes_atomic, []

    def second_fails(path, data, *a, **kw):
        writes.append(bytes(data))
        if len(writes) == 2:
            _full_disk_for(monkeypatch, "checkpoint.pt")
        return real_write(path, data, *a, **kw)

    monkeypatch.setattr(checkpoint, "write_bytes_atomic", second_fails)
    line = _one_line(CliRunner().invoke(app, _args(rule, corpus, out)), f"{out / 'checkpoint.pt'}", "it needs")
    assert "No space left on device" in line and "resumes from the last checkpoint" in line
    assert (out / "checkpoint.pt").read_bytes() == writes[0]  # the step-2 checkpoint, intact
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    assert not (out / "summary.json").exists()
    monkeypatch.undo()
    result = CliRunner().invoke(app, _args(rule, corpus, out))
    assert result.exit_code == 0, result.output
    assert json.loads((out / "summary.json").read_text())["steps"] == 4


@pytest.mark.slow
def test_plan_json_that_does_not_fit_is_one_line(setup, tmp_path, monkeypatch):
    from scalec.cli import app

    rule, corpus = setup
    out = tmp_path / "run"
    _full_disk_for(monkeypatch, "plan.json")
    _one_line(CliRunner().invoke(app, _args(rule, corpus, out)), f"{out / 'plan.json'}", "it needs")
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.slow
def test_real_file_size_limit_during_a_checkpoint_is_one_line(setup, tmp_path):
    """RLIMIT_FSIZE (what `ulimit -f` sets): the kernel itself refuses the checkpoint's bytes (EFBIG)."""
    rule, corpus = setup
    out = tmp_path / "run"
    limit = 96 * 1024  # config.json, plan.json and metrics fit; a checkpoint of the tiny model does not

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    env = {**os.environ, "SCALEC_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run(
        [sys.executable, "-m", "scalec.cli", *_args(rule, corpus, out)],
        capture_output=True, text=True, preexec_fn=limited, env=env, timeout=300,
    )  # fmt: skip
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 1 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith("error: cannot write") and "checkpoint.pt" in lines[0] and "it needs" in lines[0]
    assert not (out / "checkpoint.pt").exists() and not [p for p in out.iterdir() if p.name.endswith(".tmp")]
