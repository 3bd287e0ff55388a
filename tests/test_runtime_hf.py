"""HF presets: GPT-2 (Conv1D, fused qkv, tied lm_head) and Llama bind fully, with fans from the preset."""

from __future__ import annotations

import pytest
import torch

import scalec
from scalec.runtime.plan.binding import bind
from scalec.runtime.plan.model_shape import reveal
from scalec.runtime.plan.planner import PlanError, make_plan

# HF models (and importing transformers, ~5 s) are the slow part of a quick run: every test here is `slow`, and
# transformers is imported only when one runs.
pytestmark = pytest.mark.slow


def _transformers():
    """transformers (the optional `hf` extra), or a skip: a broken install counts as missing too."""
    try:
        import transformers
    except (ImportError, RuntimeError):  # pragma: no cover - depends on the environment
        pytest.skip("transformers (the `hf` extra) is not importable")
    return transformers


def gpt2(width: int = 32, layers: int = 2) -> torch.nn.Module:
    tf = _transformers()
    torch.manual_seed(0)
    cfg = tf.GPT2Config(
        n_embd=width, n_layer=layers, n_head=2, vocab_size=64, n_positions=16, bos_token_id=0, eos_token_id=0
    )
    return tf.GPT2LMHeadModel(cfg)


def llama(width: int = 32, layers: int = 2, tied: bool = False) -> torch.nn.Module:
    tf = _transformers()
    torch.manual_seed(0)
    cfg = tf.LlamaConfig(
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
    return tf.LlamaForCausalLM(cfg)


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


# --- plans applied in full or refused (issue 11) ---------------------------------------------------------------


def _llama(width: int, layers: int, heads: int, kv_heads: int | None = None, intermediate: int | None = None):
    tf = _transformers()
    torch.manual_seed(0)
    cfg = tf.LlamaConfig(
        hidden_size=width,
        intermediate_size=intermediate or 2 * width,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads or heads,
        vocab_size=64,
        max_position_embeddings=16,
        bos_token_id=0,
        eos_token_id=0,
    )
    return tf.LlamaForCausalLM(cfg)


def test_llama_without_fold_refuses_the_residual_multipliers_it_cannot_apply():
    with pytest.raises(PlanError) as info:
        make_plan(scalec.load("completep"), _llama(64, 8, 2), {"n": 64, "L": 8})
    msg = str(info.value)
    assert "residual.attn = 0.25" in msg and "residual.mlp = 0.25" in msg and "LlamaForCausalLM" in msg
    assert "fold=True" in msg and "\n" not in msg


def test_llama_attention_scale_fold_trains_exactly_like_setting_the_scale():
    # mup at d_head = 64 (d_head0 = 32): the logit scale sqrt(32)/64 instead of Llama's 1/sqrt(64): x 2^-1/2.
    rules, shape = scalec.load("mup", fold=True), {"n": 64, "L": 2, "d_head": 64}
    applied = make_plan(rules, _llama(64, 2, 1), shape, applied_sites={"attn.scale", "output.mult"})
    folded = make_plan(rules, _llama(64, 2, 1), shape, applied_sites={"output.mult"})
    c = 2**-0.5
    q, k = (
        folded.entry("model.layers.0.self_attn.q_proj.weight"),
        folded.entry("model.layers.0.self_attn.k_proj.weight"),
    )
    assert (q.init_std, q.lr) == pytest.approx((0.02 * 2**0.5 * c, 2**-7 * c))  # mup at m_N = 1/2, then x c
    assert (k.init_std, k.lr) == pytest.approx((0.02 * 2**0.5, 2**-7))
    assert folded.multipliers["attn.scale"] == pytest.approx(64**-0.5)

    def run(plan, model, scale):
        for layer in model.model.layers:
            layer.self_attn.scaling = scale
        out_mult = plan.multipliers["output.mult"]
        opt = torch.optim.AdamW(plan.param_groups(model))
        x = torch.randint(0, 64, (2, 12), generator=torch.Generator().manual_seed(1))
        for _ in range(3):
            loss = torch.nn.functional.cross_entropy((model(x).logits * out_mult).flatten(0, 1), x.flatten())
            opt.zero_grad()
            loss.backward()
            opt.step()
        return model(x).logits

    reference, ours = _llama(64, 2, 1), _llama(64, 2, 1)
    torch.manual_seed(0)
    applied.init_(reference)
    with torch.no_grad():
        for (name, p), t in zip(reference.named_parameters(), ours.parameters(), strict=True):
            t.copy_(p * (c if name.endswith("q_proj.weight") else 1.0))
    a = run(applied, reference, applied.multipliers["attn.scale"])
    b = run(folded, ours, 64**-0.5)
    assert torch.allclose(a, b, atol=1e-5, rtol=1e-4)


def test_fused_qkv_refuses_the_attention_scale_fold():
    with pytest.raises(
        PlanError, match="attn.scale = .* .cannot be folded: 'transformer.h.0.attn.c_attn.weight' holds"
    ):
        make_plan(scalec.load("mup", fold=True), gpt2(width=128, layers=2), {"n": 128, "L": 2, "d_head": 64})


@pytest.mark.parametrize("rule", ["mup", "mup_table3", "completep", "completedp"])
def test_tied_gpt2_readout_keeps_musharedreadouts_one_over_width(rule):
    mup = pytest.importorskip("mup")

    def twin(width: int):
        model = gpt2(width=width)
        model.lm_head = mup.MuSharedReadout(model.transformer.wte.weight, bias=False)
        return model

    ref = mup.set_base_shapes(twin(512), twin(128))
    shape, sites = {"n": 512, "L": 2, "d_head": 256}, {"output.mult", "attn.scale"}
    plan = make_plan(scalec.load(rule, fold=True), gpt2(width=512), shape, applied_sites=sites)
    assert plan.multipliers["output.mult"] == pytest.approx(1 / ref.lm_head.width_mult())  # 1/4, never dropped
    wte = plan.entry("transformer.wte.weight")
    assert (wte.role, wte.init_std, wte.lr) == ("embed", 0.02, 2**-8)  # trained as the embedding, as in mup
    with pytest.raises(PlanError, match="output.mult = 0.25 .cannot be folded: the readout shares its tensor"):
        make_plan(scalec.load(rule, fold=True), gpt2(width=512), shape, applied_sites={"attn.scale"})


@pytest.mark.parametrize(
    "shape, message",
    [
        ({"n": 1024, "L": 4, "d_head": 32}, "the shape says n=1024 but the model has n=128"),
        ({"n": 128, "L": 32, "d_head": 32}, "the shape says L=32 but the model has L=4"),
        ({"n": 128, "L": 4, "d_head": 128}, "the shape says d_head=128 but the model has d_head=32"),
    ],
)
def test_llama_shape_is_checked_against_its_config(shape, message):
    with pytest.raises(PlanError, match=message) as info:
        make_plan(scalec.load("completep", fold=True), _llama(128, 4, 4), shape)
    assert "\n" not in str(info.value)


def test_llama_reveals_intermediate_size_and_grouped_query_heads_from_its_config():
    model = _llama(128, 2, 4, kv_heads=2, intermediate=352)
    revealed = {k: v for k, (v, _) in reveal(model, bind(model)).items()}
    assert revealed == {"n": 128, "L": 2, "heads": 4, "kv_heads": 2, "d_head": 32, "intermediate": 352}
    bound = {b.name: b for b in bind(model)}
    assert bound["model.layers.0.self_attn.k_proj.weight"].fan_out == 2 * 32  # kv_heads * d_head
    assert bound["model.layers.0.mlp.up_proj.weight"].fan_out == 352
    plan = make_plan(scalec.load("completep", fold=True), model, {"n": 128, "L": 2, "d_head": 32})
    assert plan.entry("model.layers.0.mlp.down_proj.weight").fan_in == 352


@pytest.mark.parametrize("build", [gpt2, llama])
def test_module_graph_infers_the_roles_the_hf_presets_name(build):
    preset = {b.name: b.role for b in bind(build(width=64))}
    inferred = {b.name: b for b in bind(build(width=64), preset="infer", base_model=build(width=32))}
    assert {n: b.role for n, b in inferred.items()} == preset
    assert all(b.source == "graph" for b in inferred.values() if b.width_class == "hidden")
    assert [n for n, b in inferred.items() if b.fused] == (
        [f"transformer.h.{i}.attn.c_attn.weight" for i in range(2)] if build is gpt2 else []
    )
