"""The repository holds code, rules, summaries and figures: never run data."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUN_DATA_PARTS = ("store", "runs")
RUN_DATA_NAMES = ("checkpoint.pt", "metrics.jsonl", "study.journal")


def _tracked() -> list[str]:
    try:
        out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return out.splitlines()


def test_no_run_data_is_tracked():
    bad = [
        f
        for f in _tracked()
        if f.endswith((".pt", ".journal"))
        or Path(f).name in RUN_DATA_NAMES
        or (f.startswith("results/") and any(p in RUN_DATA_PARTS for p in Path(f).parts))
    ]
    assert not bad, f"run data tracked in git (untrack it, commit summaries instead): {bad[:5]}"


def test_results_files_are_small():
    big = [f for f in _tracked() if f.startswith("results/") and (ROOT / f).stat().st_size > 1_000_000]
    assert not big, f"files over 1 MB under results/: {big}"
