"""bench/throughput.py's reference is the same model as the bundled GPT under a plan: with the GPT's weights copied
in, it computes the same loss, the plan's residual, embedding and readout multipliers included."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from scalec.runtime.trainer.gpt import GPT, GPTConfig

PATH = Path(__file__).resolve().parent.parent / "bench" / "throughput.py"
# reference name -> bundled GPT name, per block (w1 is SwiGLU's gate, w3 its up projection)
BLOCK = {"n1": "attn_norm", "n2": "mlp_norm", "wq": "attn.q", "wk": "attn.k", "wv": "attn.v", "wo": "attn.o",
         "w1": "mlp.gate", "w3": "mlp.up", "w2": "mlp.down"}  # fmt: skip
TOP = {"tok.weight": "embed.weight", "norm.weight": "final_norm.weight", "head.weight": "unembed.weight"}


def _bench():
    spec = importlib.util.spec_from_file_location("bench_throughput", PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _gpt_name(ref_name: str) -> str:
    if ref_name in TOP:
        return TOP[ref_name]
    _, i, short, leaf = ref_name.split(".")
    return f"blocks.{i}.{BLOCK[short]}.{leaf}"


@pytest.mark.parametrize(
    "multipliers",
    [{}, {"residual.attn": 0.25, "residual.mlp": 0.5, "embed.mult": 2.0, "output.mult": 0.125}],
    ids=["none", "completep_like"],
)
def test_the_reference_computes_the_bundled_gpts_loss(multipliers):
    bench = _bench()
    cfg = GPTConfig(width=32, depth=3, head_dim=16, seq_len=16)
    torch.manual_seed(0)
    ours, ref = GPT(cfg, multipliers), bench.RefGPT(cfg, multipliers)
    with torch.no_grad():
        theirs = dict(ours.named_parameters())
        for name, p in ref.named_parameters():
            p.copy_(theirs[_gpt_name(name)])
    x, y = torch.randint(0, 256, (2, 16)), torch.randint(0, 256, (2, 16))
    torch.testing.assert_close(ref(x, y), ours(x, y))


def test_the_reference_refuses_a_multiplier_it_does_not_apply():
    bench = _bench()
    cfg = GPTConfig(width=32, depth=1, head_dim=16, seq_len=16)
    with pytest.raises(ValueError, match="mult\\[mlp.gate\\]"):
        bench.RefGPT(cfg, {"mult[mlp.gate]": 2.0})
    with pytest.raises(ValueError, match="attention scale"):
        bench.RefGPT(cfg, {"attn.scale": 1.0})
