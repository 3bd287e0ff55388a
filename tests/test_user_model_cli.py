"""`--model FILE.py:FUNC` on train, sweep, plan and coord-check, and `--objective` on sweep: the file's sibling
modules import from any working directory, every output records the binding (roles, folds, hooks) and the model
file's hash, and bad models are one `error:` line."""

from __future__ import annotations

import hashlib
import json

import pytest
from typer.testing import CliRunner

from scalec.cli import app
from tests.test_coord_check_any_model import ROLES
from tests.test_transfer_cli import TINY_RULE, corpus  # noqa: F401 - fixture

TINY = ["--width", "32", "--depth", "1", "--seq-len", "32", "--batch", "256"]

LAYERS = """
import torch
import torch.nn.functional as F
from torch import nn


class Block(nn.Module):
    def __init__(self, d, head_dim=16):
        super().__init__()
        self.heads = d // head_dim
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.q, self.k, self.v, self.proj = (nn.Linear(d, d, bias=False) for _ in range(4))
        self.fc1, self.fc2 = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(self, x):
        b, t, d = x.shape
        y = self.ln1(x)
        q, k, v = (m(y).view(b, t, self.heads, -1).transpose(1, 2) for m in (self.q, self.k, self.v))
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, t, d)
        x = x + self.proj(a)
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))
"""

MODEL = '''
import torch
from torch import nn

from user_cli_layers import Block  # a sibling module: importable as for a script


class Tiny(nn.Module):
    def __init__(self, d, depth, head_dim=16):
        super().__init__()
        self.head_dim = head_dim
        self.tok = nn.Embedding(256, d)
        self.blocks = nn.ModuleList(Block(d, head_dim) for _ in range(depth))
        self.ln_f = nn.LayerNorm(d)
        self.head = nn.Linear(d, 256, bias=False)

    def forward(self, idx):
        x = self.tok(idx)
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))


def build(width, depth):
    return Tiny(width, depth)


def build_untold(width, depth):
    """The head dimension is only in the attention calls: no config, no head_dim attribute."""
    model = Tiny(width, depth, head_dim=8)
    del model.head_dim
    return model


def forward_raises(width, depth):
    model = Tiny(width, depth)
    model.forward = lambda idx: idx.no_such_method()
    return model


def fit(model, optimizer, run):
    """A few steps on a fixed random byte batch: the final cross-entropy."""
    g = torch.Generator().manual_seed(run.seed)
    x = torch.randint(0, 256, (4, 16), generator=g)
    for step in range(run.steps):
        logits = model(x[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 256), x[:, 1:].reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        run.report(step + 1, loss.item())
    return loss.item()
'''


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("usermodel")
    (folder / "user_cli_layers.py").write_text(LAYERS)
    (folder / "user_cli_model.py").write_text(MODEL)
    roles = {**ROLES, "blocks.*.ln?.bias": "bias"}
    (folder / "roles.json").write_text(json.dumps(roles))
    (folder / "tiny_mup.scale").write_text(TINY_RULE.format("muP"))
    return folder


def invoke(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
def test_train_records_binding_and_hash_and_resumes(files, corpus, tmp_path):  # noqa: F811
    model = files / "user_cli_model.py"
    args = ["train", files / "tiny_mup.scale", "--model", f"{model}:build", "--steps", "3", *TINY]
    args += ["--corpus", corpus, "--out", tmp_path / "run", "--quiet"]
    first = invoke(*args)
    assert first.exit_code == 0, first.output
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["model"] == f"{model}:build" and config["model_sha256"] == _sha(model)
    binding = json.loads((tmp_path / "run" / "binding.json").read_text())
    assert binding == json.loads((tmp_path / "run" / "plan.json").read_text())["binding"]
    # No roles given: the module graph finds them; muP's 1/d attention is folded into the queries (x 4 / sqrt(16)
    # at d_head 16 against the model's own 1/sqrt(16)), its readout multiplier 128/32 = 4 is a hook.
    assert binding["parameters"]["blocks.0.proj.weight"] == "attn.o"
    assert binding["parameters"]["blocks.0.fc2.weight"] == "mlp.down"
    assert binding["parameters"]["head.weight"] == "unembed"
    assert any(f.startswith("attn.scale -> attn.q") for f in binding["folds"])
    assert binding["hooks"]["output.mult x mult[unembed]"]["factor"] == pytest.approx(4.0)
    again = invoke(*args)
    assert again.exit_code == 0 and "after 3 steps" in again.output


@pytest.mark.slow
def test_sweep_with_your_objective_stores_the_binding(files, tmp_path):
    model = files / "user_cli_model.py"
    args = ["sweep", files / "tiny_mup.scale", "--hp", "eta=2^-8,2^-5", "--steps", "3", *TINY]
    args += ["--model", f"{model}:build", "--objective", f"{model}:fit", "--roles", files / "roles.json"]
    result = invoke(*args, "--out", tmp_path / "sw")
    assert result.exit_code == 0, result.output
    assert result.output.count("(finished,") == 2 and "best: objective" in result.output
    runs = [json.loads(p.read_text()) for p in (tmp_path / "sw").glob("runs/*/run.json")]
    assert {r["config"]["objective_sha256"] for r in runs} == {_sha(model)}
    results = [json.loads(p.read_text()) for p in (tmp_path / "sw").glob("runs/*/result.json")]
    assert all(r["summary"]["binding"]["parameters"]["blocks.0.fc1.weight"] == "mlp.up" for r in results)
    again = invoke(*args, "--out", tmp_path / "sw")
    assert again.output.count("(finished, reused)") == 2


@pytest.mark.slow
def test_plan_of_your_model_prints_its_binding(files):
    model = files / "user_cli_model.py"
    result = invoke(
        "plan", "mup", "--model", f"{model}:build", "--roles", files / "roles.json", "--width", "64", "--depth", "2"
    )
    assert result.exit_code == 0, result.output
    assert "hook output.mult x mult[unembed]: x 2" in result.output  # 128 / 64
    data = json.loads(
        invoke("plan", "mup", "--model", f"{model}:build", "--width", "64", "--depth", "2", "--json").output
    )
    assert data["binding"]["model_sha256"] == _sha(model)
    assert data["binding"]["parameters"]["tok.weight"] == "embed"


@pytest.mark.slow
@pytest.mark.parametrize(
    "args, needle",
    [
        (["--model", "{model}:nope"], "defines no function nope(width, depth)"),
        (["--model", "{model}:forward_raises"], "forward raised AttributeError"),
        (["--roles", "{roles}"], "pass --model too"),
        (["--model", "{model}:build", "--objective", "{model}:missing"], "no function missing(model, optimizer, run)"),
    ],
)
def test_bad_models_are_one_error_line(files, corpus, tmp_path, args, needle):  # noqa: F811
    model, roles = files / "user_cli_model.py", files / "roles.json"
    args = [a.format(model=model, roles=roles) for a in args]
    command = "train" if "--objective" not in args else "sweep"
    extra = ["--hp", "eta=2^-8"] if command == "sweep" else ["--quiet"]
    result = invoke(
        command,
        files / "tiny_mup.scale",
        *args,
        *extra,
        "--steps",
        "2",
        *TINY,
        "--corpus",
        corpus,
        "--out",
        tmp_path / "out",
    )
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], result.output


@pytest.mark.slow
def test_coord_check_json_records_the_binding_and_the_files_hash(files, corpus, tmp_path):  # noqa: F811
    model = files / "user_cli_model.py"
    args = ["coord-check", files / "tiny_mup.scale", "--model", f"{model}:build", "--roles", files / "roles.json"]
    args += ["--widths", "32,64", "--depths", "1", "--steps", "1", "--seeds", "1", "--seq-len", "16"]
    result = invoke(*args, "--corpus", corpus, "--out", tmp_path / "cc")
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "cc" / "coord_check.json").read_text())
    assert data["model_sha256"] == _sha(model) and data["roles"]["tok.weight"] == "embed"
    assert sorted(data["binding"]) == ["n=32,L=1", "n=64,L=1"]
    # muP's readout multiplier 1/m_N with base width 128: x4 at width 32, x2 at 64, applied by a hook.
    assert data["binding"]["n=32,L=1"]["hooks"]["output.mult x mult[unembed]"]["factor"] == pytest.approx(4.0)
    assert data["binding"]["n=64,L=1"]["hooks"]["output.mult x mult[unembed]"]["factor"] == pytest.approx(2.0)
    assert data["binding"]["n=32,L=1"]["parameters"]["blocks.0.fc2.weight"] == "mlp.down"


@pytest.mark.slow
def test_train_runs_your_objective_once_into_the_run_dir(files, tmp_path):
    model = files / "user_cli_model.py"
    args = ["train", files / "tiny_mup.scale", "--model", f"{model}:build", "--objective", f"{model}:fit"]
    args += ["--roles", files / "roles.json", "--steps", "3", *TINY, "--out", tmp_path / "run"]
    first = invoke(*args)
    assert first.exit_code == 0 and first.output.startswith("finished: objective "), first.output
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["reports"] == 3 and summary["binding"]["parameters"]["head.weight"] == "unembed"
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 3
    (tmp_path / "run" / "metrics.jsonl").write_text("kept\n")
    again = invoke(*args)
    assert again.exit_code == 0 and again.output == first.output
    assert (tmp_path / "run" / "metrics.jsonl").read_text() == "kept\n"  # finished: not run again


@pytest.mark.slow
def test_the_api_coord_check_records_the_binding_at_each_shape(corpus, tmp_path):  # noqa: F811
    import scalec
    from tests.test_coord_check_any_model import tiny

    scalec.coord_check(
        build=tiny,
        rule="sp",
        widths=(32,),
        depths=(1, 2),
        patterns=ROLES,
        corpus=corpus,
        steps=1,
        seeds=1,
        seq_len=16,
        out=tmp_path,
    )
    data = json.loads((tmp_path / "coord_check.json").read_text())
    assert sorted(data["binding"]) == ["n=32,L=1", "n=32,L=2"]
    assert data["binding"]["n=32,L=2"]["parameters"]["blocks.1.proj.weight"] == "attn.o"
    assert data["roles"] == ROLES


def test_a_head_dim_seen_only_in_the_attention_calls_plans_at_that_head_dim(files):
    """muP's attn.scale is sqrt(32)/d_head (base d_head 32): a model that declares no head dimension is planned at the
    d_head its traced attention calls use (8 here), not refused and not at the base. Hand-derived fold into the
    queries: sqrt(32)/8 over the model's own 1/sqrt(8) = 2."""
    model = files / "user_cli_model.py"
    out = invoke("plan", "mup", "--model", f"{model}:build_untold", "--width", "64", "--depth", "2", "--json")
    assert out.exit_code == 0, out.output
    plan = json.loads(out.output)
    assert plan["axes"]["d_head"] == 8 and plan["folded"] == ["attn.scale -> attn.q (x 2)"]
