"""`scalec sweep/search/transfer`: bad input is one line before any run starts; tiny real runs end to end."""

from __future__ import annotations

import json
import random

import pytest
from typer.testing import CliRunner

import scalec

pytestmark = pytest.mark.skipif(not hasattr(scalec, "load"), reason="needs the rule compiler (scalec.load)")

TINY = ["--width", "32", "--depth", "1", "--seq-len", "32", "--batch", "256", "--head-dim", "16"]
# The bundled rules declare D >= 2^16 tokens; these test rules allow the few-step runs below.
TINY_RULE = 'parameterisation Tiny{0} extends {0}\n  "{0} for few-step tests."\n  axis D = 2^22 in [2^8, 2^44]\n'


@pytest.fixture(scope="module")
def rules_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("rules")
    for parent in ("SP", "muP"):
        (folder / f"tiny_{parent.lower()}.scale").write_text(TINY_RULE.format(parent))
    return folder


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A small synthetic text file; prepared corpora go to a temp cache, never the user's."""
    rng = random.Random(0)
    words = ["the", "king", "doth", "speak", "of", "love", "and", "war", "thee", "thou", "art", "fair"]
    text = " ".join(rng.choice(words) for _ in range(40_000))
    path = tmp_path_factory.mktemp("corpus") / "tiny.txt"
    path.write_text(text)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SCALEC_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield str(path)


def invoke(*args: str):
    from scalec.cli import app

    return CliRunner().invoke(app, list(args))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["sweep", "mup", "--hp", "zeta=1,2", "--steps", "2"], "no tunable HP of that name in muP"),
        (["sweep", "mup", "--hp", "beta1=0.9..1.2:3", "--steps", "2"], "beta1 must satisfy 0 <= beta1 < 1; got 1.2"),
        (["sweep", "mup", "--hp", "eta=-0.01,0.01", "--steps", "2"], "eta must satisfy eta > 0; got -0.01"),
        (["sweep", "mup", "--hp", "eta=2^-9..2^-5", "--steps", "2"], "a grid needs a point count"),
        (
            ["sweep", "mup", "--hp", "eta=0.01,0.1", "--steps", "2", "--width", "8", "--head-dim", "8"],
            "--width 8: outside the range [16, 65536]",
        ),
        (
            ["sweep", "completedp", "--hp", "eta=0.01,0.1", "--duration", "2^22", "--batch", "2^20"],
            "CompleteDP needs at least 103 optimizer steps here (S = D/B >= 102.4)",
        ),
        (["search", "mup", "--sampler", "bayes", "--steps", "2"], "unknown; choose one of tpe"),
        (["search", "mup", "--space", "nothing*", "--steps", "2"], "matches no tunable HP"),
        (
            [
                "transfer",
                "mup",
                "--hp",
                "eta=2^-9..2^-5:3",
                "--base-shape",
                "n=64",
                "--target-shape",
                "n=2^20",
                "--steps",
                "100",
            ],
            "--width 131072: outside the range",
        ),
        (
            ["sweep", "mup", "--hp", "eta=0.01,0.1", "--steps", "2"],
            "--steps 2 (= 8192 tokens at --batch 4096): outside the range [65536",
        ),
        (
            [
                "transfer",
                "mup",
                "--hp",
                "eta=2^-9..2^-5:3",
                "--base-shape",
                "n=64",
                "--target-shape",
                "n=128,L=4",
                "--steps",
                "2",
            ],
            "give exactly one axis that differs",
        ),
    ],
)
def test_bad_input_is_one_line_before_any_run(tmp_path, args, message):
    result = invoke(*args, "--out", str(tmp_path / "out"))
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert message in lines[0]
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_sweep_trains_stores_and_resumes(tmp_path, corpus, rules_dir):
    out = tmp_path / "sw"
    args = [
        "sweep",
        str(rules_dir / "tiny_mup.scale"),
        "--hp",
        "eta=2^-8,2^-5",
        "--steps",
        "3",
        "--corpus",
        corpus,
        "--out",
        str(out),
        *TINY,
    ]
    first = invoke(*args)
    assert first.exit_code == 0, first.output
    assert "best: final val loss" in first.output and first.output.count("(finished,") == 2
    again = invoke(*args)
    assert again.exit_code == 0 and again.output.count("(finished, reused)") == 2
    summaries = [json.loads(p.read_text()) for p in out.glob("runs/*/result.json")]
    assert len(summaries) == 2 and all(s["summary"]["steps"] == 3 for s in summaries)
    assert "| 2^-8 |" in (out / "sweep.md").read_text()


@pytest.mark.slow
def test_transfer_writes_table_figure_and_json(tmp_path, corpus, rules_dir):
    out = tmp_path / "tr"
    mup, sp = str(rules_dir / "tiny_mup.scale"), str(rules_dir / "tiny_sp.scale")
    result = invoke(
        "transfer",
        mup,
        "--vs",
        sp,
        "--hp",
        "eta=2^-8..2^-4:3",
        "--base-shape",
        "n=32",
        "--target-shape",
        "n=64",
        "--steps",
        "2",
        "--corpus",
        corpus,
        "--out",
        str(out),
        *TINY[2:],
    )
    assert result.exit_code == 0, result.output
    data = json.loads((out / "transfer.json").read_text())
    assert [r["rule"] for r in data["rules"]] == [sp, mup] and data["sizes"] == [32, 64]
    assert (out / "transfer.png").stat().st_size > 10_000
    assert "### Transfer from n=32 to n=64" in (out / "transfer.md").read_text()


@pytest.mark.slow
def test_search_runs_trials_through_the_store(tmp_path, corpus, rules_dir):
    out = tmp_path / "se"
    result = invoke(
        "search",
        str(rules_dir / "tiny_mup.scale"),
        "--space",
        "eta,lr[mlp.down]",
        "--sampler",
        "random",
        "--trials",
        "3",
        "--steps",
        "2",
        "--corpus",
        corpus,
        "--out",
        str(out),
        *TINY,
    )
    assert result.exit_code == 0, result.output
    assert "3 complete trials, 0 failed" in result.output and "best: final val loss" in result.output
    assert len(list(out.glob("store/runs/*/result.json"))) == 3
