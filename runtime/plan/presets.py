"""Name-pattern presets that bind the parameters of well-known models to roles.

A preset is an ordered list of `Rule(pattern, role, layout)`. Patterns are fnmatch globs over the normalised
dotted parameter name (`*` also matches dots). `layout` says which weight dim is fan-out and which fan-in:
`"out_in"` is torch's Linear convention, `"in_out"` covers lookup tables (V, n) and HF's Conv1D (in, out).
"""

from __future__ import annotations

from dataclasses import dataclass

LAYOUTS = ("out_in", "in_out")


@dataclass(frozen=True)
class Rule:
    """One binding rule: parameters whose normalised name matches `pattern` take `role`."""

    pattern: str
    role: str
    layout: str = "out_in"
    fused: bool = False  # the tensor holds q, k and v (bound as attn.q, their representative)


@dataclass(frozen=True)
class Preset:
    """A named list of rules plus how `preset="auto"` recognises the model."""

    name: str
    rules: tuple[Rule, ...]
    classes: tuple[str, ...] = ()  # model class names that select this preset under "auto"
    marker_names: tuple[str, ...] = ()  # normalised parameter names whose presence selects it under "auto"
    note: str = ""


GPT = Preset(
    name="gpt",
    rules=(
        Rule("embed.weight", "embed", "in_out"),
        Rule("blocks.*.attn_norm.weight", "norm"),
        Rule("blocks.*.mlp_norm.weight", "norm"),
        Rule("blocks.*.attn.q.weight", "attn.q"),
        Rule("blocks.*.attn.k.weight", "attn.k"),
        Rule("blocks.*.attn.v.weight", "attn.v"),
        Rule("blocks.*.attn.o.weight", "attn.o"),
        Rule("blocks.*.attn.q_norm.weight", "qk_norm"),
        Rule("blocks.*.attn.k_norm.weight", "qk_norm"),
        Rule("blocks.*.mlp.up.weight", "mlp.up"),
        Rule("blocks.*.mlp.gate.weight", "mlp.gate"),
        Rule("blocks.*.mlp.down.weight", "mlp.down"),
        Rule("final_norm.weight", "final_norm"),
        Rule("unembed.weight", "unembed"),
        Rule("*.bias", "bias"),
    ),
    classes=("GPT",),
    marker_names=("embed.weight", "unembed.weight"),
    note="the bundled GPT (scalec.runtime.trainer.gpt)",
)

# transformers GPT2LMHeadModel. Conv1D stores (in, out). The fused c_attn is bound as attn.q, the
# representative of q/k/v (all three share every width exponent; the attention scale cannot be folded into it).
# The final LayerNorm's weight and bias are `final_norm` (as nanoGPT-mup's completep groups ln_f.*); a norm's
# bias starts at 0 (make_plan), the rule's init_mean 1 being the gain's.
HF_GPT2 = Preset(
    name="hf-gpt2",
    rules=(
        Rule("transformer.wte.weight", "embed", "in_out"),
        Rule("transformer.wpe.weight", "embed", "in_out"),
        Rule("transformer.h.*.ln_1.weight", "norm"),
        Rule("transformer.h.*.ln_2.weight", "norm"),
        Rule("transformer.h.*.attn.c_attn.weight", "attn.q", "in_out", fused=True),
        Rule("transformer.h.*.attn.c_proj.weight", "attn.o", "in_out"),
        Rule("transformer.h.*.mlp.c_fc.weight", "mlp.up", "in_out"),
        Rule("transformer.h.*.mlp.c_proj.weight", "mlp.down", "in_out"),
        Rule("transformer.h.*.bias", "bias"),
        Rule("transformer.ln_f.weight", "final_norm"),
        Rule("transformer.ln_f.bias", "final_norm"),
        Rule("lm_head.weight", "unembed"),
    ),
    classes=("GPT2LMHeadModel", "GPT2Model"),
    marker_names=("transformer.wte.weight",),
    note="transformers GPT2LMHeadModel (lm_head tied to wte)",
)

HF_LLAMA = Preset(
    name="hf-llama",
    rules=(
        Rule("model.embed_tokens.weight", "embed", "in_out"),
        Rule("model.layers.*.self_attn.q_proj.weight", "attn.q"),
        Rule("model.layers.*.self_attn.k_proj.weight", "attn.k"),
        Rule("model.layers.*.self_attn.v_proj.weight", "attn.v"),
        Rule("model.layers.*.self_attn.o_proj.weight", "attn.o"),
        Rule("model.layers.*.self_attn.q_norm.weight", "qk_norm"),
        Rule("model.layers.*.self_attn.k_norm.weight", "qk_norm"),
        Rule("model.layers.*.mlp.gate_proj.weight", "mlp.gate"),
        Rule("model.layers.*.mlp.up_proj.weight", "mlp.up"),
        Rule("model.layers.*.mlp.down_proj.weight", "mlp.down"),
        Rule("model.layers.*.input_layernorm.weight", "norm"),
        Rule("model.layers.*.post_attention_layernorm.weight", "norm"),
        Rule("model.layers.*.bias", "bias"),
        Rule("model.norm.weight", "final_norm"),
        Rule("lm_head.weight", "unembed"),
    ),
    classes=("LlamaForCausalLM", "LlamaModel"),
    marker_names=("model.embed_tokens.weight",),
    note="transformers LlamaForCausalLM",
)

# litgpt's own `GPT` (litgpt/model.py), names as its source builds them at Lightning-AI/litgpt@26857050fe3f
# (tests/data/litgpt_names.json, written by tests/data/make_litgpt_names.py): the fused `attn.qkv` splits as
# [q; k; v] and is bound as attn.q; LLaMAMLP computes proj(act(fc_1(x)) * fc_2(x)) (fc_1 the gate); GptNeoxMLP
# proj(act(fc(x))); Qwen3/OLMo-2 QK-norm `attn.norm_q|norm_k`; Gemma-style post-branch norms are hidden norms.
LITGPT = Preset(
    name="litgpt",
    rules=(
        Rule("transformer.wte.weight", "embed", "in_out"),
        Rule("transformer.h.*.norm_1.weight", "norm"),
        Rule("transformer.h.*.norm_2.weight", "norm"),
        Rule("transformer.h.*.post_attention_norm.weight", "norm"),
        Rule("transformer.h.*.post_mlp_norm.weight", "norm"),
        Rule("transformer.h.*.attn.qkv.weight", "attn.q", fused=True),
        Rule("transformer.h.*.attn.proj.weight", "attn.o"),
        Rule("transformer.h.*.attn.norm_q.weight", "qk_norm"),
        Rule("transformer.h.*.attn.norm_k.weight", "qk_norm"),
        Rule("transformer.h.*.mlp.fc_1.weight", "mlp.gate"),
        Rule("transformer.h.*.mlp.fc_2.weight", "mlp.up"),
        Rule("transformer.h.*.mlp.fc.weight", "mlp.up"),
        Rule("transformer.h.*.mlp.proj.weight", "mlp.down"),
        Rule("transformer.h.*.bias", "bias"),
        Rule("transformer.ln_f.weight", "final_norm"),
        Rule("transformer.ln_f.bias", "final_norm"),
        Rule("lm_head.weight", "unembed"),
        Rule("lm_head.bias", "bias"),
    ),
    classes=("GPT",),
    marker_names=("transformer.wte.weight", "transformer.h.0.attn.qkv.weight"),
    note="litgpt's GPT (litgpt/model.py at 26857050fe3f)",
)

PRESETS: dict[str, Preset] = {p.name: p for p in (GPT, HF_GPT2, HF_LLAMA, LITGPT)}


def detect_preset(model: object, names: list[str]) -> Preset | None:
    """The preset `preset="auto"` picks: one whose marker parameter names are all present, preferring one that
    also lists the model's class (a class name alone is not trusted: nanoGPT's model is also called GPT)."""
    present = set(names)
    fits = [p for p in PRESETS.values() if all(n in present for n in p.marker_names)]
    cls = type(model).__name__
    return next((p for p in fits if cls in p.classes), fits[0] if fits else None)
