"""Every command reads values the same way and refuses bad ones in one line, quickly, before building anything."""

from __future__ import annotations

import json
import multiprocessing
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

import scalec
from scalec.cli import app

LIMIT_S = 5.0  # CPU seconds a refusal may take once the rule is compiled


def _invoke(args: list[str], conn) -> None:
    start = time.process_time()
    result = CliRunner().invoke(app, args)
    conn.send((result.exit_code, result.output, time.process_time() - start))


def invoke_bounded(*args: str, wall_s: float = 120.0) -> tuple[int, str, float]:
    """Run the CLI in a forked child (rules already compiled in this process); a hang is a failure, not a
    frozen test run. Returns (exit code, output, CPU seconds)."""
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_invoke, args=(list(args), child))
    proc.start()
    ready = parent.poll(wall_s)
    if not ready:
        proc.kill()
        proc.join()
        pytest.fail(f"scalec {' '.join(args)} ran past {wall_s:.0f} s")
    code, output, cpu = parent.recv()
    proc.join()
    return code, output, cpu


@pytest.fixture(scope="module", autouse=True)
def compiled_rules():
    """Compile the rules once so the timings below measure the command, not the compiler."""
    for rule in ("mup", "completep"):
        scalec.load(rule)


def one_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    assert "Traceback" not in output
    return lines[0]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        # bounded numbers: these hung (exact 9^387420489) or overflowed later
        (["plan", "mup", "--width", "64", "--depth", "2", "--hp", "eta=9^9^9"], 1, "beyond the bound of 1024"),
        (["show", "mup", "--hp", "eta=9^9^9"], 1, "beyond the bound of 1024"),
        (["sweep", "mup", "--hp", "eta=9^9^9", "--steps", "2"], 1, "beyond the bound of 1024"),
        (["plan", "mup", "--width", "64", "--depth", "2", "--batch", "9^9^9"], 1, "--batch '9^9^9' has the exponent"),
        (["train", "mup", "--batch", "9^9^9", "--steps", "2"], 1, "--batch '9^9^9' has the exponent"),
        (["train", "mup", "--steps", "2", "--hp", "eta=2^1000"], 1, "'2^1000' is too large (magnitude at most 2^128)"),
        (["sweep", "mup", "--hp", "eta=2^-10..2^-6:100000000", "--steps", "2"], 1, "beyond the bound of 10000"),
        # one domain for every command
        (["show", "mup", "--hp", "eta=-1"], 1, "eta must satisfy eta > 0; got -1"),
        (["plan", "mup", "--width", "64", "--depth", "2", "--hp", "eta=0"], 1, "eta must satisfy eta > 0; got 0"),
        (["train", "mup", "--steps", "2", "--hp", "eta=-1"], 1, "eta must satisfy eta > 0; got -1"),
        (["plan", "mup", "--width", "64", "--depth", "2", "--base", "n=100.5"], 1, "--base n '100.5' is not a whole"),
        (["train", "mup", "--steps", "2", "--base", "n=100.5"], 1, "--base n '100.5' is not a whole"),
        (["compare", "sp", "mup", "--hp", "eta=0.01"], 1, "need --empirical"),
        # counts are whole and positive, as usage errors (exit 2) naming the option
        (["train", "mup", "--steps", "-1"], 2, "Invalid value for '--steps': '-1' must be at least 1"),
        (["coord-check", "mup", "--head-dim", "0"], 2, "Invalid value for '--head-dim': '0' must be at least 1"),
        (
            ["transfer", "mup", "--hp", "eta=1", "--base-shape", "n=64", "--target-shape", "n=128", "--seeds", "0"],
            2,
            "Invalid value for '--seeds': '0' must be at least 1",
        ),
        (["sweep", "mup", "--width", "2^x", "--steps", "2"], 2, "Invalid value for '--width': '2^x' is not a number"),
        # the shape is checked before the model is built (depth 100000 built for > 50 s)
        (["plan", "completep", "--model", "gpt", "--width", "64", "--depth", "100000"], 1, "axis L=100000 is outside"),
        (["coord-check", "mup", "--widths", "8,64", "--head-dim", "8"], 1, "axis n=8 is outside the range"),
        # output paths
        (["compile", "mup", "-o", "/nonexistent/x.py"], 1, "the folder /nonexistent does not exist"),
    ],
)
def test_bad_values_are_one_line_errors_within_seconds(args, code, message):
    exit_code, output, cpu = invoke_bounded(*args)
    line = one_line(output)
    assert exit_code == code, output
    assert line.startswith("error: ") and message in line, line
    assert cpu < LIMIT_S, f"{cpu:.1f} CPU s"


@pytest.mark.slow
def test_compile_into_a_folder_is_refused_and_leaves_nothing(tmp_path: Path):
    exit_code, output, _ = invoke_bounded("compile", "mup", "-o", str(tmp_path))
    assert exit_code == 1 and f"-o {tmp_path} is a folder" in one_line(output)
    assert not list(tmp_path.parent.glob(f"{tmp_path.name}.tmp")) and not list(tmp_path.iterdir())


@pytest.mark.slow
def test_every_command_reads_powers_and_suffixes():
    runner = CliRunner()
    shown = runner.invoke(app, ["show", "mup", "--batch", "2^14", "--duration", "16M", "--width", "2^8"])
    assert shown.exit_code == 0, shown.output
    assert "n=256" in shown.output and "B=16384" in shown.output and "D=1.6e+07" in shown.output
    plan = runner.invoke(app, ["plan", "mup", "--width", "2^6", "--depth", "2", "--batch", "16k", "--json"])
    assert plan.exit_code == 0, plan.output
    assert json.loads(plan.stdout)["axes"]["n"] == 64 and json.loads(plan.stdout)["axes"]["B"] == 16000


@pytest.mark.slow
def test_params_and_hps_read_one_syntax():
    """`--param alpha=2^-1` was refused while `--hp` took 2^-1; now it is alpha = 1/2 (residual m_L^-1/2)."""
    args = ["plan", "completep", "--width", "128", "--depth", "8", "--json"]
    result = CliRunner().invoke(app, [*args, "--param", "alpha=2^-1", "--hp", "eta=2^-7"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["multipliers"]["residual.attn"] == pytest.approx((8 / 2) ** -0.5)  # base L = 2
    checked = CliRunner().invoke(app, ["check", "completep", "--param", "alpha=2^-1"])
    assert "alpha=1/2" in checked.output
    # CompleteP states `expect depth: complete`, which alpha = 1/2 is not (depth-muP): check says so and exits 1
    assert checked.exit_code == 1 and "expect depth: complete" in checked.output


def test_train_config_names_the_steps_it_refuses():
    from scalec.runtime.trainer.train_config import TrainConfig, TrainConfigError

    with pytest.raises(TrainConfigError, match="--steps must be positive, got -1"):
        TrainConfig(width=32, depth=1, batch=64, seq_len=32, steps=-1)


def test_fmt_check_prints_a_unified_diff_and_changes_nothing(tmp_path: Path):
    from scalec.compiler.loader import bundled_rules

    source = Path(bundled_rules()["mup"])
    messy = tmp_path / "messy.scale"
    text = source.read_text().replace("role hidden:", "role   hidden:", 1)
    messy.write_text(text)
    result = CliRunner().invoke(app, ["fmt", "--check", str(messy)])
    assert result.exit_code == 1
    assert f"--- {messy}" in result.output and f"+++ {messy} (formatted)" in result.output
    assert "\n-  role   hidden:" in result.output and "\n+  role hidden:" in result.output and "@@ " in result.output
    assert messy.read_text() == text


@pytest.mark.slow
def test_plan_builds_hf_llama_with_grouped_query_heads_and_its_own_mlp_width():
    pytest.importorskip("transformers")
    res = CliRunner().invoke(
        app,
        ["plan", "completep", "--model", "hf-llama", "--width", "256", "--depth", "2", "--heads", "8"]
        + ["--kv-heads", "2", "--intermediate", "688", "--json"],
    )
    assert res.exit_code == 0, res.output
    shapes = {p["name"]: p["shape"] for p in json.loads(res.output)["parameters"]}
    # 8 heads of 32 dims, 2 of them shared by keys/values: k_proj maps 256 -> 2 * 32 = 64.
    assert shapes["model.layers.0.self_attn.k_proj.weight"] == [64, 256]
    assert shapes["model.layers.0.mlp.up_proj.weight"] == [688, 256]
    bad = CliRunner().invoke(app, ["plan", "completep", "--width", "256", "--depth", "2", "--kv-heads", "3"])
    assert bad.exit_code == 1 and "hf-llama" in bad.output
