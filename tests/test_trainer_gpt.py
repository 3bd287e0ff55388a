"""The bundled GPT: parameter names, multipliers as exact forward scalings, causality, FLOP count."""

from __future__ import annotations

import math

import pytest
import torch

from scalec.runtime.trainer.gpt import GPT, GPTConfig


def _model(qk_norm: bool = False, multipliers: dict | None = None, seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(GPTConfig(width=32, depth=2, head_dim=16, seq_len=16, qk_norm=qk_norm), multipliers)


def _tokens(seed: int = 1) -> torch.Tensor:
    return torch.randint(0, 256, (2, 16), generator=torch.Generator().manual_seed(seed))


def test_parameter_names_follow_the_contract():
    names = [n for n, _ in _model(qk_norm=True).named_parameters()]
    block = [
        "attn_norm.weight",
        "attn.q.weight",
        "attn.k.weight",
        "attn.v.weight",
        "attn.o.weight",
        "attn.q_norm.weight",
        "attn.k_norm.weight",
        "mlp_norm.weight",
        "mlp.up.weight",
        "mlp.gate.weight",
        "mlp.down.weight",
    ]
    expected = ["embed.weight"] + [f"blocks.{i}.{b}" for i in range(2) for b in block]
    assert names == expected + ["final_norm.weight", "unembed.weight"]
    assert not any("q_norm" in n for n, _ in _model(qk_norm=False).named_parameters())


def test_shapes_scale_linearly_with_width():
    for width in (32, 64, 128):
        m = GPT(GPTConfig(width=width, depth=1, seq_len=8))
        p = dict(m.named_parameters())
        assert p["blocks.0.mlp.up.weight"].shape == (3 * width, width)
        assert p["blocks.0.attn.q.weight"].shape == (width, width)
        assert p["embed.weight"].shape == p["unembed.weight"].shape == (256, width)
        assert m.config.n_heads == width // 32


def test_n_heads_sets_head_dim_and_bad_split_is_rejected():
    assert GPTConfig(width=64, depth=1, n_heads=2).head_dim == 32
    with pytest.raises(ValueError, match="head_dim"):
        GPTConfig(width=48, depth=1, head_dim=32)


def test_future_tokens_do_not_change_past_logits():
    m, x = _model(qk_norm=True), _tokens()
    y = x.clone()
    y[:, 10:] = (y[:, 10:] + 7) % 256
    with torch.no_grad():
        assert torch.allclose(m(x)[:, :10], m(y)[:, :10], atol=1e-5)


@pytest.mark.parametrize("role", ["attn.v", "attn.o", "mlp.up", "mlp.down", "mlp.gate", "unembed", "embed"])
def test_role_multiplier_equals_scaling_that_weight(role):
    x, mult = _tokens(), 1.7
    a = _model(multipliers={f"mult[{role}]": mult})
    b = _model()
    with torch.no_grad():
        for name, p in b.named_parameters():
            if name == f"{role}.weight" or name.endswith(f".{role}.weight"):
                p.mul_(mult)
        assert torch.allclose(a(x), b(x), atol=1e-5)


@pytest.mark.parametrize("qk_norm", [False, True])
def test_query_key_multipliers_are_exact(qk_norm):
    x = _tokens()
    role = "qk_norm" if qk_norm else "attn.q"
    a = _model(qk_norm, {f"mult[{role}]": 1.5})
    b = _model(qk_norm)
    with torch.no_grad():
        for name, p in b.named_parameters():
            if name.endswith("q_norm.weight" if qk_norm else "attn.q.weight") or (
                qk_norm and name.endswith("k_norm.weight")
            ):
                p.mul_(1.5)
        assert torch.allclose(a(x), b(x), atol=1e-5)


def test_sites_scale_their_outputs():
    x = _tokens()
    base, scaled = _model(), _model(multipliers={"output.mult": 0.5})
    with torch.no_grad():
        assert torch.allclose(scaled(x), 0.5 * base(x), atol=1e-6)
    zero_branch = _model(multipliers={"residual.attn": 0.0, "residual.mlp": 0.0})
    with torch.no_grad():
        h = zero_branch.embed(x)
        expected = zero_branch.unembed(zero_branch.final_norm(h))
        assert torch.allclose(zero_branch(x), expected, atol=1e-6)
    default_scale = _model(multipliers={"attn.scale": 1 / math.sqrt(16)})
    with torch.no_grad():
        assert torch.equal(default_scale(x), base(x))


def test_unknown_multiplier_key_is_rejected():
    with pytest.raises(KeyError, match="unknown GPT multiplier"):
        _model(multipliers={"mult[nonsense]": 2.0})


def test_flops_per_token_is_6n_plus_attention_term():
    m = _model()
    n = sum(p.numel() for name, p in m.named_parameters() if name != "embed.weight")
    assert m.num_params() == n
    assert m.num_params(non_embedding=False) == n + 256 * 32
    assert m.flops_per_token() == 6 * n + 12 * 2 * 32 * 16


def test_forward_hooks_see_stable_module_names():
    m, seen = _model(), {}
    names = ["embed", "blocks.0.attn", "blocks.1.mlp", "final_norm", "unembed"]
    modules = dict(m.named_modules())
    for name in names:
        modules[name].register_forward_hook(lambda mod, inp, out, name=name: seen.update({name: out.shape}))
    with torch.no_grad():
        m(_tokens())
    assert seen["unembed"] == (2, 16, 256) and seen["blocks.0.attn"] == (2, 16, 32)
    assert set(seen) == set(names)


def test_seeded_init_is_normal_002_in_parameter_order_with_unit_norm_gains():
    """The seeded default init is unchanged by the meta-device shortcut: N(0, 0.02) drawn parameter by parameter in
    `named_parameters` order from the seed, norm gains 1 (regenerated here with torch's generator directly)."""
    model = _model(qk_norm=True, seed=7)
    torch.manual_seed(7)
    for name, p in model.named_parameters():  # nn.Linear's own constructor init draws first, in build order
        if name.split(".")[-2] in ("q", "k", "v", "o", "up", "gate", "down"):
            torch.nn.init.kaiming_uniform_(torch.empty_like(p), a=math.sqrt(5))
    for name, p in model.named_parameters():
        if name.endswith("norm.weight"):
            assert torch.equal(p, torch.ones_like(p)), name
        else:
            assert torch.equal(p, torch.empty_like(p).normal_(0.0, 0.02)), name


def test_rope_tables_are_cos_and_sin_of_position_times_inverse_frequency():
    model = _model()
    head_dim, base = model.config.head_dim, model.config.rope_base
    for t, i in [(0, 0), (3, 1), (15, head_dim // 2 - 1)]:
        angle = t / base ** (2 * i / head_dim)
        assert model.rope_cos[t, i].item() == pytest.approx(math.cos(angle), rel=1e-6, abs=1e-7)
        assert model.rope_sin[t, i].item() == pytest.approx(math.sin(angle), rel=1e-6, abs=1e-7)


@pytest.mark.slow
def test_meta_build_imports_no_dynamo():
    """Plans and coordinate checks build the GPT on the meta device: that must not import torch._dynamo (~1 s)."""
    import subprocess
    import sys

    code = (
        "import sys, torch\n"
        "from scalec.runtime.trainer.gpt import GPT, GPTConfig\n"
        "with torch.device('meta'):\n"
        "    m = GPT(GPTConfig(width=64, depth=2, head_dim=16, seq_len=16, qk_norm=True))\n"
        "assert m.rope_cos.shape == (16, 8) and m.embed.weight.is_meta\n"
        "print(sorted(k for k in sys.modules if k.startswith('torch._dynamo'))[:3])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
