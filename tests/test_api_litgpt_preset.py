"""The `litgpt` preset binds litgpt's real parameter names: those its own `GPT` class builds at a pinned commit
(tests/data/litgpt_names.json, generated from its source by tests/data/make_litgpt_names.py; the package itself
does not import without lightning)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

import scalec
from scalec.runtime import bind

NAMES = json.loads((Path(__file__).parent / "data" / "litgpt_names.json").read_text())


class GPT(nn.Module):
    """litgpt's parameter tree (same class name, names and shapes), without its forward."""

    def __init__(self, parameters: dict[str, str]) -> None:
        super().__init__()
        for name, shape in parameters.items():
            *path, leaf = name.split(".")
            owner = self
            for part in path:
                if not hasattr(owner, part):
                    owner.add_module(part, nn.Module())
                owner = getattr(owner, part)
            owner.register_parameter(leaf, nn.Parameter(torch.empty(*map(int, shape.split("x")))))


def roles(model_name: str) -> dict[str, str]:
    bound = bind(GPT(NAMES["models"][model_name]["parameters"]))
    assert {b.source for b in bound} == {"preset:litgpt"}  # picked by `auto`, every parameter bound
    return {b.name: b.role for b in bound if ".1." not in b.name}


def test_names_come_from_a_pinned_litgpt_commit():
    assert NAMES["source"] == "Lightning-AI/litgpt@26857050fe3ff627cd714fe92f5838f51a3d5efa"


def test_llama_family_binds_swiglu_and_the_fused_grouped_query_qkv():
    assert roles("Llama-3.2-1B") == {
        "lm_head.weight": "unembed",
        "transformer.wte.weight": "embed",
        "transformer.h.0.norm_1.weight": "norm",
        "transformer.h.0.attn.qkv.weight": "attn.q",
        "transformer.h.0.attn.proj.weight": "attn.o",
        "transformer.h.0.norm_2.weight": "norm",
        "transformer.h.0.mlp.fc_1.weight": "mlp.gate",  # proj(silu(fc_1(x)) * fc_2(x))
        "transformer.h.0.mlp.fc_2.weight": "mlp.up",
        "transformer.h.0.mlp.proj.weight": "mlp.down",
        "transformer.ln_f.weight": "final_norm",
    }
    qkv = next(b for b in bind(GPT(NAMES["models"]["Llama-3.2-1B"]["parameters"])) if b.role == "attn.q")
    assert qkv.fused and (qkv.fan_in, qkv.fan_out) == (128, 128 + 2 * 2 * 32)  # q: 4 heads, k and v: 2 groups


def test_pythia_family_binds_biases_and_its_final_layernorm():
    r = roles("pythia-14m")
    assert r["transformer.h.0.mlp.fc.weight"] == "mlp.up" and r["transformer.h.0.mlp.proj.weight"] == "mlp.down"
    assert r["transformer.h.0.attn.qkv.bias"] == r["transformer.h.0.norm_1.bias"] == "bias"
    assert r["transformer.ln_f.weight"] == r["transformer.ln_f.bias"] == "final_norm"


def test_qwen3_family_binds_qk_norms():
    r = roles("Qwen3-0.6B")
    assert r["transformer.h.0.attn.norm_q.weight"] == r["transformer.h.0.attn.norm_k.weight"] == "qk_norm"


def test_mup_plan_of_a_litgpt_model_has_the_table8_lrs():
    # muP with the base width moved to 64: at litgpt's n_embd 128, m_N = 2 (hand: hidden eta/2, vectors eta).
    model = GPT(NAMES["models"]["Llama-3.2-1B"]["parameters"])
    rules = scalec.load("mup", base={"n": 64})
    opt = scalec.optimizer(model, rules, {"n": 128, "L": 2, "d_head": 32}, {"eta": 2**-7}, fold=True)  # head_size
    lr = {r: g["lr"] for g in opt.param_groups for r in g["roles"]}
    assert lr["attn.q"] == lr["mlp.gate"] == lr["mlp.down"] == 2**-8 and lr["embed"] == lr["norm"] == 2**-7
    assert lr["unembed"] == 2**-8  # its 1/m_N multiplier folded into the lr


def test_nanogpt_style_names_keep_the_hf_gpt2_preset():
    # nanoGPT's class is also called GPT; without litgpt's `attn.qkv` it is not taken for litgpt.
    model = GPT({"transformer.wte.weight": "256x64", "transformer.h.0.attn.c_attn.weight": "64x192"})
    assert {b.source for b in bind(model)} == {"preset:hf-gpt2"}
