"""bench/transfer_studies.py's CLI: --dry-run prints the commands and runs nothing; --help lists the studies."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

PATH = Path(__file__).resolve().parent.parent / "bench" / "transfer_studies.py"


def _module():
    spec = importlib.util.spec_from_file_location("transfer_studies", PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_dry_run_prints_the_exact_commands_and_runs_nothing(monkeypatch, capsys):
    studies = _module()

    def refuse(*args, **kwargs):
        raise AssertionError("a dry run started a process")

    monkeypatch.setattr(studies.subprocess, "run", refuse)
    studies.main(["--dry-run", "depth"])
    assert capsys.readouterr().out.splitlines() == [
        "$ scalec transfer completep --vs mup --hp 'eta=2^-11..2^-5:7' --base-shape n=64,L=2 --target-shape L=16 "
        "--batch 2048 --steps 100 --seq-len 64 --eval-every 1000000 --eval-batches 16 --device cpu --seeds 3 "
        "--out results/depth --title 'depth transfer: 100 steps x 2048 tokens, n=64'"
    ]


def test_help_describes_every_study_and_unknown_names_are_refused(capsys):
    studies = _module()
    with pytest.raises(SystemExit) as exit_:
        studies.main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for name in ("width", "width256", "depth", "batch", "duration", "per-module", "width-muon", "all"):
        assert f"\n  {name} " in out
    assert "CompleteP (residual m_L^-1) vs muP" in out
    with pytest.raises(SystemExit) as exit_:
        studies.main(["--dry-run", "nope"])
    assert exit_.value.code == 2
    assert "invalid choice: 'nope'" in capsys.readouterr().err
