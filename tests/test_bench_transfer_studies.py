"""bench/transfer_studies.py's CLI: --dry-run prints the commands and runs nothing; --help lists the studies."""

from __future__ import annotations

import importlib.util
import json
import math
import statistics
import sys
from pathlib import Path

import pytest

PATH = Path(__file__).resolve().parent.parent / "bench" / "transfer_studies.py"


def _module():
    spec = importlib.util.spec_from_file_location("transfer_studies", PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file executes
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


def _synthetic_runs(drift_per_size: dict[int, float], base: int, rule: str, axis: str) -> list[dict]:
    """Three seeds of 0.2 (log2 eta - v)^2 + 2 + offset on the protocol's grid around 2^-9, v = -9 + drift."""
    rows = []
    for value, drift in drift_per_size.items():
        for x in (-10.0, -9.5, -9.0, -8.5, -8.0):
            for seed, offset in enumerate((0.0, 0.03, -0.02)):
                loss = 0.2 * (x - (-9.0 + drift)) ** 2 + 2.0 + offset
                rows.append({"rule": rule, "axis": axis, "value": value, "eta": 2.0**x, "seed": seed, "val_loss": loss})
    return rows


@pytest.mark.slow  # ~3 s: the figure
def test_analyse_rederives_drifts_verdicts_and_a_figure_from_a_stored_file(tmp_path, monkeypatch):
    studies = _module()
    monkeypatch.setattr(studies.subprocess, "run", lambda *a, **k: (_ for _ in ()).throw(AssertionError("trained")))
    runs = _synthetic_runs({2**19: 0.0, 2**17: 0.5, 2**21: -0.5}, 2**19, "A", "D")
    runs += _synthetic_runs({2**19: 0.0, 2**17: 0.1, 2**21: -0.1}, 2**19, "B", "D")
    (tmp_path / "duration.json").write_text(json.dumps({"title": "synthetic", "base": 2**19, "runs": runs}))
    written = studies.analyse_evidence(tmp_path)
    assert (tmp_path / "duration.png").stat().st_size > 0 and tmp_path / "duration.md" in written
    md = (tmp_path / "duration.md").read_text()
    # every seed has the same vertex: drifts exact, intervals degenerate, verdicts by the +-0.35 band
    assert "| A | D=2^17 | +0.50 | [+0.50, +0.50] | [+0.50, +0.50] | [+0.50, +0.50] | does not transfer |" in md
    assert "| B | D=2^21 | -0.10 | [-0.10, -0.10] | [-0.10, -0.10] | [-0.10, -0.10] | transfers |" in md
    # lr* ~ D^k: -0.5 octaves per 4x (two doublings) is k = -0.25
    assert "| A | 2^17, 2^19, 2^21 | -0.25 | [-0.25, -0.25] |" in md
    # seed 1 sits 0.03 above seed 0 at every point on both rules: the paired gap is exactly 0, with no spread
    assert "| A minus B | D=2^19 | +0.000 | [+0.000, +0.000] |" in md


def test_loss_gaps_pair_only_arms_trained_for_the_same_tokens():
    """E3's 400-step repeat sits in depth.json beside the 100-step arms: a gap between horizons compares training
    lengths, not rules, so the table leaves it out."""
    studies = _module()
    runs = [r for rule in ("A", "B", "A long") for r in _synthetic_runs({2: 0.0, 16: 0.0}, 2, rule, "L")]
    horizon = [{"rule": rule, "axis": "L", "value": v, "params": 1000 * v, "tokens": tokens}
               for rule, tokens in (("A", 100), ("B", 100), ("A long", 400)) for v in (2, 16)]  # fmt: skip
    md = studies.drift_markdown({"title": "synthetic", "base": 2, "runs": runs, "horizon": horizon})
    assert "| A minus B | L=16 | +0.000 | [+0.000, +0.000] |" in md
    assert "A minus A long" not in md and "B minus A long" not in md


def test_analyse_gives_each_per_module_arm_a_paired_gain_with_a_t_interval(tmp_path):
    studies = _module()
    ref, arm = [2.45, 2.47, 2.44], [2.40, 2.41, 2.41]  # gains 0.05, 0.06, 0.03: mean 0.0467, sd 0.01528
    runs = [{"rule": r, "axis": "n", "value": 128, "eta": 2.0**-8, "seed": s, "val_loss": y}
            for r, ys in (("global", ref), ("per-module", arm)) for s, y in enumerate(ys)]  # fmt: skip
    (tmp_path / "per_module.json").write_text(json.dumps({"title": "synthetic", "base": None, "runs": runs}))
    studies.analyse_evidence(tmp_path)
    md = (tmp_path / "per_module.md").read_text()
    half = 2.920 * statistics.stdev([0.05, 0.06, 0.03]) / math.sqrt(3)
    interval = f"[{0.14 / 3 - half:+.4f}, {0.14 / 3 + half:+.4f}]"
    assert f"| per-module | 2^-8.00 | 2.4067 | 0.0058 | +0.0467 {interval} |" in md


def test_the_evidence_experiments_sweep_five_half_octave_points_with_three_paired_seeds(capsys):
    studies = _module()
    studies.main(["--dry-run", "ev-duration"])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 9  # 3 arms x 3 durations, one sweep each
    assert lines[0] == (
        "$ scalec sweep completep --width 32 --depth 2 --batch 1024 --duration 524288 "
        "--hp 'eta=2^-10,2^-9.5,2^-9,2^-8.5,2^-8' --seeds 3 --seq-len 64 --eval-every 1000000 --eval-batches 16 "
        "--device cpu --out results/evidence/store/completep_width32_depth2_batch1024_duration524288_s3"
    )


def test_sizes_and_reverse_split_an_experiments_curves_between_processes(capsys):
    studies = _module()
    studies.main(["--dry-run", "--reverse", "--sizes", "4096", "ev-batch"])
    outs = [line.rsplit("--out ", 1)[1] for line in capsys.readouterr().out.splitlines()]
    assert outs == [
        "results/evidence/store/completep_betas_b10_d19_width32_depth2_batch4096_duration524288_s3",
        "results/evidence/store/completedp_b10_d19_width32_depth2_batch4096_duration524288_s3",
        "results/evidence/store/completep_width32_depth2_batch4096_duration524288_s3",
    ]
