"""HF presets: GPT-2 (Conv1D, fused qkv, tied lm_head) and Llama bind fully, with fans from the preset."""

from __future__ import annotations

import pytest
import torch

from scalec.runtime.plan.binding import bind

try:  # transformers is the optional `hf` extra; a broken install counts as missing too
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM
except (ImportError, RuntimeError):  # pragma: no cover - depends on the environment
    pytest.skip("transformers (the `hf` extra) is not importable", allow_module_level=True)


def gpt2(width: int = 32, layers: int = 2) -> GPT2LMHeadModel:
    torch.manual_seed(0)
    cfg = GPT2Config(
        n_embd=width, n_layer=layers, n_head=2, vocab_size=64, n_positions=16, bos_token_id=0, eos_token_id=0
    )
    return GPT2LMHeadModel(cfg)


def llama(width: int = 32, layers: int = 2, tied: bool = False) -> LlamaForCausalLM:
    torch.manual_seed(0)
    cfg = LlamaConfig(
        hidden_size=width,
        intermediate_size=2 * width,
        num_hidden_layers=layers,
        num_attention_heads=2,
        num_key_value_heads=2,
        vocab_size=64,
        max_position_embeddings=16,
        tie_word_embeddings=tied,
        bos_token_id=0,
        eos_token_id=0,
    )
    return LlamaForCausalLM(cfg)


def test_gpt2_binds_every_parameter_with_conv1d_fans_from_the_preset():
    bound = {b.name: b for b in bind(gpt2(width=32))}
    assert {b.source for b in bound.values()} == {"preset:hf-gpt2"}
    c_attn = bound["transformer.h.0.attn.c_attn.weight"]
    assert c_attn.shape == (32, 96) and c_attn.role == "attn.q"
    assert (c_attn.fan_in, c_attn.fan_out) == (32, 96)  # Conv1D is (in, out): fan_in is shape[0]
    down = bound["transformer.h.1.mlp.c_proj.weight"]
    assert down.role == "mlp.down" and (down.fan_in, down.fan_out) == (128, 32)
    assert bound["transformer.h.0.attn.c_proj.weight"].role == "attn.o"
    assert bound["transformer.h.0.mlp.c_fc.weight"].role == "mlp.up"
    assert bound["transformer.h.0.ln_1.weight"].role == "norm"
    assert bound["transformer.h.0.ln_1.bias"].role == "bias"
    assert bound["transformer.h.0.attn.c_attn.bias"].role == "bias"
    assert bound["transformer.ln_f.weight"].role == "final_norm"
    # nanoGPT-mup (branch completep) puts ln_f.weight and ln_f.bias in its final-norm group
    assert bound["transformer.ln_f.bias"].role == "final_norm"
    assert bound["transformer.wpe.weight"].role == "embed"


def test_gpt2_tied_lm_head_is_planned_once_as_the_embedding():
    bound = {b.name: b for b in bind(gpt2())}
    assert "lm_head.weight" not in bound
    wte = bound["transformer.wte.weight"]
    assert wte.role == "embed" and wte.tied_with == ("lm_head.weight",)
    assert (wte.fan_in, wte.fan_out) == (64, 32)


def test_llama_binds_every_parameter_and_unties_the_readout():
    bound = {b.name: b for b in bind(llama(width=32))}
    assert {b.source for b in bound.values()} == {"preset:hf-llama"}
    roles = {n: b.role for n, b in bound.items()}
    layer = {
        "self_attn.q_proj.weight": "attn.q",
        "self_attn.k_proj.weight": "attn.k",
        "self_attn.v_proj.weight": "attn.v",
        "self_attn.o_proj.weight": "attn.o",
        "mlp.gate_proj.weight": "mlp.gate",
        "mlp.up_proj.weight": "mlp.up",
        "mlp.down_proj.weight": "mlp.down",
        "input_layernorm.weight": "norm",
        "post_attention_layernorm.weight": "norm",
    }
    assert roles == {
        "model.embed_tokens.weight": "embed",
        "model.norm.weight": "final_norm",
        "lm_head.weight": "unembed",
        **{f"model.layers.{i}.{k}": v for i in range(2) for k, v in layer.items()},
    }
    assert (bound["model.layers.0.mlp.down_proj.weight"].fan_in, bound["lm_head.weight"].fan_in) == (64, 32)


def test_llama_with_tied_embeddings_plans_the_shared_tensor_as_embed():
    bound = {b.name: b for b in bind(llama(tied=True))}
    assert "lm_head.weight" not in bound
    assert bound["model.embed_tokens.weight"].tied_with == ("lm_head.weight",)
    assert bound["model.embed_tokens.weight"].role == "embed"


def test_shape_inference_on_gpt2_agrees_with_the_preset_width_classes():
    preset = {b.name: b.width_class for b in bind(gpt2(width=32))}
    inferred = {b.name: b.width_class for b in bind(gpt2(width=64), preset="infer", base_model=gpt2(width=32))}
    assert inferred == preset


def test_presets_bind_models_built_on_the_meta_device():
    with torch.device("meta"):
        model = llama(width=64)
    assert len(bind(model)) == 2 * 9 + 3
