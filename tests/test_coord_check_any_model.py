"""Coordinate checks on models scalec did not build: a custom transformer written here, HF Llama and tied HF GPT-2.
SP fails the width sweep, muP passes width and fails depth, CompleteP passes depth, for each; forward
multipliers are applied by hooks (checked against hand-derived factors) or refused in one line."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from typer.testing import CliRunner

import scalec
from scalec.cli import app
from scalec.runtime.plan.multiplier_hooks import HOOK_SITES, MultiplierHookError, install
from scalec.runtime.plan.planner import make_plan
from scalec.runtime.studies.coord_check import CoordCheckError, load_batches, run_coord_check
from scalec.runtime.studies.coord_subject import ModelSubject
from tests.test_compare_coord_check import CFG, synthetic_corpus


def _transformers():
    """transformers (the optional `hf` extra), imported only by the (slow) HF cases; a broken install skips."""
    try:
        import transformers
    except (ImportError, RuntimeError):  # pragma: no cover - depends on the environment
        pytest.skip("transformers (the `hf` extra) is not importable")
    return transformers


# ---------------------------------------------------------------- a custom model, as a user would write it


class Block(nn.Module):
    """Pre-norm block; the MLP branch ends in a Linear with a bias (folding cannot take it, a hook can)."""

    def __init__(self, d: int, head_dim: int, post_norm: bool = False) -> None:
        super().__init__()
        self.heads = d // head_dim
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.q, self.k, self.v, self.proj = (nn.Linear(d, d, bias=False) for _ in range(4))
        self.fc1, self.fc2 = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)
        self.post = nn.LayerNorm(d, elementwise_affine=False) if post_norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        y = self.ln1(x)
        q, k, v = (m(y).view(b, t, self.heads, -1).transpose(1, 2) for m in (self.q, self.k, self.v))
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, t, d)
        x = x + self.post(self.proj(a))
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


class Tiny(nn.Module):
    def __init__(self, d: int, depth: int, head_dim: int = 16, post_norm: bool = False) -> None:
        super().__init__()
        self.head_dim = head_dim
        self.tok = nn.Embedding(256, d)
        self.blocks = nn.ModuleList(Block(d, head_dim, post_norm) for _ in range(depth))
        self.ln_f = nn.LayerNorm(d)
        self.head = nn.Linear(d, 256, bias=False)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.tok(idx)
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))


ROLES = {
    "tok.weight": "embed",
    "blocks.*.ln?.weight": "norm",
    "blocks.*.q.weight": "attn.q",
    "blocks.*.k.weight": "attn.k",
    "blocks.*.v.weight": "attn.v",
    "blocks.*.proj.weight": "attn.o",
    "blocks.*.fc1.weight": "mlp.up",
    "blocks.*.fc2.weight": "mlp.down",
    "blocks.*.bias": "bias",
    "ln_f.*": "final_norm",
    "head.weight": "unembed",
}

MODEL_FILE = """
from tests.test_coord_check_any_model import Tiny

def build(width, depth):
    return Tiny(width, depth)

def broken(width, depth):
    raise RuntimeError("no GPU here")

def small_vocab(width, depth):
    model = Tiny(width, depth)
    model.head = __import__("torch").nn.Linear(width, 64, bias=False)
    return model

def wrong_width(width, depth):
    return Tiny(2 * width, depth)
"""


def tiny(width: int, depth: int) -> Tiny:
    return Tiny(width, depth)


def llama(width: int, depth: int) -> nn.Module:
    """HF Llama, head dim 16 (muP's 1/d attention scale then differs from the model's and is folded into q)."""
    tf = _transformers()
    cfg = tf.LlamaConfig(
        hidden_size=width,
        intermediate_size=4 * width,
        num_hidden_layers=depth,
        num_attention_heads=width // 16,
        num_key_value_heads=width // 16,
        head_dim=16,
        vocab_size=256,
        max_position_embeddings=64,
        bos_token_id=0,
        eos_token_id=0,
    )
    return tf.LlamaForCausalLM(cfg)


def gpt2(width: int, depth: int, head_dim: int = 32) -> nn.Module:
    """HF GPT-2: fused c_attn, biases everywhere, lm_head tied to wte; no dropout (a check measures, not trains)."""
    tf = _transformers()
    cfg = tf.GPT2Config(
        n_embd=width,
        n_layer=depth,
        n_head=width // head_dim,
        vocab_size=256,
        n_positions=64,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=0,
        eos_token_id=0,
    )
    return tf.GPT2LMHeadModel(cfg)


FACTORIES = {"custom": (tiny, ROLES), "llama": (llama, None), "gpt2": (gpt2, None)}
MODELS = [
    "custom",
    pytest.param("llama", marks=pytest.mark.slow),
    pytest.param("gpt2", marks=pytest.mark.slow),
]
# Which sweeps each verdict needs: one size on the other axis means no sweep there.
SIZES = {"sp": ((32, 64, 128), (2,)), "mup": ((32, 64, 128), (1, 2, 4)), "completep": ((64,), (1, 2, 4))}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory):
    path = tmp_path_factory.mktemp("corpus") / "synthetic.txt"
    path.write_bytes(synthetic_corpus())
    return str(path), load_batches(str(path), CFG)


@pytest.fixture(scope="module")
def checks(data):
    """Coordinate checks per (model, rule), computed once, on one torch thread."""
    import dataclasses

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    cache: dict = {}

    def get(model: str, rule: str):
        if (model, rule) not in cache:
            widths, depths = SIZES[rule]
            cfg = dataclasses.replace(CFG, widths=widths, depths=depths, head_dim=None)
            factory, patterns = FACTORIES[model]
            subject = ModelSubject(factory, patterns, label=model)
            cache[model, rule] = run_coord_check(scalec.load(rule), cfg, *data[1], subject=subject)
        return cache[model, rule]

    yield get
    torch.set_num_threads(threads)


def _sweep(result, sweep: str) -> list:
    return [(v.module, v.status, round(v.update_ratio, 2)) for v in result.verdicts if v.sweep == sweep]


@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS)
def test_sp_fails_the_width_sweep(checks, model):
    r = checks(model, "sp")
    assert list(r.sweeps) == ["width"]
    assert r.status("width") == "unstable", _sweep(r, "width")
    assert r.verdict("width", "residual").update_ratio > 3, _sweep(r, "width")


@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS)
def test_mup_passes_width_and_fails_depth(checks, model):
    r = checks(model, "mup")
    assert r.status("width") == "pass", _sweep(r, "width")
    assert r.status("depth") == "unstable", _sweep(r, "depth")
    assert r.verdict("depth", "residual").update_ratio > 2.5, _sweep(r, "depth")


@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS)
def test_completep_passes_depth(checks, model):
    r = checks(model, "completep")
    assert list(r.sweeps) == ["depth"]
    assert r.status("depth") == "pass", _sweep(r, "depth")


# ---------------------------------------------------------------- the hooks, against hand-derived factors


def _logits(model: nn.Module, idx: torch.Tensor) -> torch.Tensor:
    out = model(idx)
    return getattr(out, "logits", out)


@pytest.mark.slow  # HF GPT-2 (transformers)
def test_tied_gpt2_readout_keeps_mups_one_over_m_n_as_a_hook():
    """mup's MuSharedReadout: the tied tensor trains as the embedding, the logits are divided by n / n0."""
    torch.manual_seed(0)
    model, idx = gpt2(256, 2).eval(), torch.randint(0, 256, (2, 8))
    plan = make_plan(scalec.load("mup"), model, {"n": 256, "L": 2}, applied_sites=HOOK_SITES)
    assert plan.entry("transformer.wte.weight").role == "embed"
    with torch.no_grad():
        bare = _logits(model, idx)
        hooks = install(model, plan, example=idx)
        hooked = _logits(model, idx)
    hooks.remove()
    torch.testing.assert_close(hooked, bare * (128 / 256))  # muP's base width n0 = 128


def test_residual_hooks_scale_each_branch_by_m_l_to_the_minus_alpha():
    """CompleteP at L = 8 (L0 = 2): each branch's output times (8/2)^-1, the bias of fc2 included."""
    torch.manual_seed(0)
    model, idx = Tiny(32, 8, head_dim=32).eval(), torch.randint(0, 256, (2, 8))
    plan = make_plan(
        scalec.load("completep"), model, {"n": 32, "L": 8, "d_head": 32}, patterns=ROLES, applied_sites=HOOK_SITES
    )
    seen: dict[str, torch.Tensor] = {}
    block = model.blocks[0]
    block.fc2.register_forward_hook(lambda m, i, o: seen.__setitem__("in", i[0]))
    with torch.no_grad():
        hooks = install(model, plan, example=idx)
        model(idx)
        hooked = block.fc2(seen["in"])  # the hook applies to every call of the branch's last module
        hooks.remove()
        bare = block.fc2(seen["in"])
    torch.testing.assert_close(hooked, bare * 0.25)


def test_a_branch_that_is_normalised_before_the_residual_add_is_refused():
    """A post-branch norm undoes any multiplier on the branch's last matrix: the hook would not be exact."""
    torch.manual_seed(0)
    model, idx = Tiny(32, 4, head_dim=32, post_norm=True), torch.randint(0, 256, (2, 8))
    plan = make_plan(
        scalec.load("completep"), model, {"n": 32, "L": 4, "d_head": 32}, patterns=ROLES, applied_sites=HOOK_SITES
    )
    with pytest.raises(MultiplierHookError, match="residual stream") as err:
        install(model, plan, example=idx)
    assert "\n" not in str(err.value)
    assert not any(m._forward_hooks for m in model.modules())  # nothing left behind


def test_hooks_refuse_an_attention_scale_the_model_does_not_apply():
    """A plan that keeps muP's attention scale as a multiplier (applied_sites="all") cannot be hooked."""
    torch.manual_seed(0)
    model = Tiny(32, 2)
    plan = make_plan(scalec.load("mup"), model, {"n": 32, "L": 2, "d_head": 16}, patterns=ROLES, applied_sites="all")
    with pytest.raises(MultiplierHookError, match=r"attn.scale = 0.353553"):  # sqrt(32) / 16, not 1/4
        install(model, plan, example=torch.zeros(1, 4, dtype=torch.long))


@pytest.mark.slow  # trains HF-sized head-dim variants (~2 s)
def test_mups_attention_scale_is_folded_into_the_queries_at_another_head_dim(data):
    """muP's scale sqrt(d0)/d vs the model's 1/sqrt(d) at d = 16, d0 = 32: q's init std and lr x sqrt(2), from
    muP's 0.02 * m_N^-1/2 and 2^-6 * m_N^-1 at n = 32 (n0 = 128); k untouched."""
    cfg = CFG.__class__(widths=(32, 64), depths=(2,), head_dim=None)
    inst = ModelSubject(tiny, ROLES).build(scalec.load("mup"), 32, 2, 0, cfg, data[1][1])
    q, k = inst.model.blocks[0].q.weight, inst.model.blocks[0].k.weight
    inst.close()
    assert float(q.detach().std()) == pytest.approx(0.04 * math.sqrt(2), rel=0.05)
    assert float(k.detach().std()) == pytest.approx(0.04, rel=0.05)
    lrs = {round(g["lr"], 12) for g in inst.optimizer.param_groups for p in g["params"] if p is q}
    assert lrs == {round(2**-6 * 4 * math.sqrt(2), 12)}


@pytest.mark.slow  # HF GPT-2 (transformers)
def test_fused_qkv_cannot_take_a_folded_attention_scale(data):
    """GPT-2's c_attn holds q, k and v: folding the scale into it would scale keys and values too."""
    cfg = CFG.__class__(widths=(32, 64), depths=(1,), steps=1, seeds=1, batch=2, seq_len=8, head_dim=None)
    subject = ModelSubject(lambda w, d: gpt2(w, d, head_dim=16), label="gpt2")
    with pytest.raises(CoordCheckError, match=r"gpt2\(32, 1\): muP needs .*c_attn.weight.*fused qkv"):
        run_coord_check(scalec.load("mup"), cfg, *data[1], subject=subject)


# ---------------------------------------------------------------- CLI, API and one-line errors


@pytest.fixture
def model_file(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(__import__("pathlib").Path(__file__).parent.parent))
    path = tmp_path / "my_model.py"
    path.write_text(MODEL_FILE)
    roles = tmp_path / "roles.json"
    roles.write_text(json.dumps(ROLES))
    return path, roles


TINY_RUN = ["--steps", "2", "--seeds", "1", "--batch", "2", "--seq-len", "16"]


@pytest.mark.slow
def test_cli_checks_your_model_and_writes_outputs(data, model_file, tmp_path):
    path, roles = model_file
    out = tmp_path / "out"
    args = ["coord-check", "mup", "--model", f"{path}:build", "--roles", str(roles), "--widths", "32,64"]
    result = CliRunner().invoke(app, [*args, "--depths", "2", *TINY_RUN, "--corpus", data[0], "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "coordinate check vs width" in result.output and "vs depth" not in result.output
    saved = json.loads((out / "coord_check.json").read_text())
    assert saved["model"] == f"{path}:build" and {v["sweep"] for v in saved["verdicts"]} == {"width"}
    assert {"sweep", "module", "status"} <= set(saved["verdicts"][0])
    assert (out / "coord_check.csv").is_file() and (out / "coord_width.png").is_file()
    assert not (out / "coord_depth.png").exists()


def test_without_patterns_roles_come_from_the_module_graph(data):
    """No roles given, no preset fits: make_plan infers them (branch ends included), the hooks find them."""
    r = scalec.coord_check(tiny, "completep", widths=(32,), depths=(1, 2), corpus=data[0], steps=1, seeds=1)
    assert list(r.sweeps) == ["depth"] and all(v.status != "diverged" for v in r.verdicts)


def test_api_runs_a_factory_with_patterns(data):
    r = scalec.coord_check(tiny, "sp", widths=(32,), depths=(1, 2), patterns=ROLES, corpus=data[0], steps=1, seeds=1)
    assert r.model == "tiny" and list(r.sweeps) == ["depth"] and len(r.verdicts) == 6


@pytest.mark.slow
@pytest.mark.parametrize(
    "args, needle",
    [
        (["--model", "nofile.py:build"], "no such file"),
        (["--model", "{path}"], "FILE.py:FUNC"),
        (["--model", "{path}:nope"], "no function nope"),
        (["--model", "{path}:broken"], "RuntimeError: no GPU here"),
        (["--model", "{path}:small_vocab", "--roles", "{roles}"], "vocabulary of 64"),
        (["--model", "{path}:wrong_width", "--roles", "{roles}"], "wrong_width(32, 1): the shape says n=32"),
        (["--model", "{path}:build", "--roles", "{bad_roles}"], "owning 'attn.o'"),
        (["--model", "{path}:build", "--roles", "{path}"], "not JSON"),
        (["--roles", "{roles}"], "pass --model too"),
    ],
)
def test_bad_models_are_one_line_errors(args, needle, data, model_file, tmp_path):
    path, roles = model_file
    bad_roles = tmp_path / "bad_roles.json"  # binds each block's proj as attn.v: no attention branch end
    bad_roles.write_text(json.dumps({**ROLES, "blocks.*.proj.weight": "attn.v"}))
    args = [a.format(path=path, roles=roles, bad_roles=bad_roles) for a in args]
    sizes = ["--widths", "32,64", "--depths", "1"]
    run = [*sizes, *TINY_RUN, "--corpus", data[0], "--out", str(tmp_path / "out")]
    result = CliRunner().invoke(app, ["coord-check", "sp", *args, *run])
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], result.output
