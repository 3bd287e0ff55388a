"""Binding parameters to roles: presets, normalised names, user patterns, tied weights, shape inference."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from scalec.compiler.vocabulary import ROLES
from scalec.runtime.plan.binding import bind
from scalec.runtime.plan.model_params import BindingError, normalise_name
from scalec.runtime.plan.shape_inference import infer_roles
from scalec.runtime.trainer.gpt import GPT, GPTConfig


def _gpt(width: int = 32, qk_norm: bool = True) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(width=width, depth=2, head_dim=16, seq_len=8, vocab=64, qk_norm=qk_norm))


def _roles(bound) -> dict[str, str]:
    return {b.name: b.role for b in bound}


class TiedLM(nn.Module):
    """Embedding and readout share one tensor; `head_first` registers the readout before the embedding."""

    def __init__(self, width: int = 16, vocab: int = 32, head_first: bool = False) -> None:
        super().__init__()
        if head_first:
            self.head = nn.Linear(width, vocab, bias=False)
            self.emb = nn.Embedding(vocab, width)
        else:
            self.emb = nn.Embedding(vocab, width)
            self.head = nn.Linear(width, vocab, bias=False)
        self.head.weight = self.emb.weight
        self.body = nn.Linear(width, width)
        self.norm = nn.LayerNorm(width)


TIED_PATTERNS = {
    "emb.weight": "embed",
    "head.weight": "unembed",
    "body.weight": "mlp.up",
    "*.bias": "bias",
    "norm.weight": "norm",
}


def test_gpt_preset_binds_every_parameter_of_the_bundled_gpt():
    bound = _roles(bind(_gpt()))
    assert bound["embed.weight"] == "embed"
    assert bound["unembed.weight"] == "unembed"
    assert bound["final_norm.weight"] == "final_norm"
    block = {
        "attn_norm.weight": "norm",
        "mlp_norm.weight": "norm",
        "attn.q.weight": "attn.q",
        "attn.k.weight": "attn.k",
        "attn.v.weight": "attn.v",
        "attn.o.weight": "attn.o",
        "attn.q_norm.weight": "qk_norm",
        "attn.k_norm.weight": "qk_norm",
        "mlp.up.weight": "mlp.up",
        "mlp.gate.weight": "mlp.gate",
        "mlp.down.weight": "mlp.down",
    }
    for i in range(2):
        for suffix, role in block.items():
            assert bound[f"blocks.{i}.{suffix}"] == role
    assert len(bound) == 3 + 2 * len(block)


def test_fans_follow_the_layout_not_the_second_dim():
    bound = {b.name: b for b in bind(_gpt(width=32))}
    assert (bound["embed.weight"].fan_in, bound["embed.weight"].fan_out) == (64, 32)  # (V, n) lookup
    assert (bound["unembed.weight"].fan_in, bound["unembed.weight"].fan_out) == (32, 64)  # (V, n) readout
    assert (bound["blocks.0.mlp.down.weight"].fan_in, bound["blocks.0.mlp.down.weight"].fan_out) == (96, 32)
    assert bound["blocks.0.attn_norm.weight"].width_class == "vector"


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("_orig_mod.module.blocks.0.attn.q.weight", "blocks.0.attn.q.weight"),
        ("blocks.0._fsdp_wrapped_module._checkpoint_wrapped_module.mlp.up.weight", "blocks.0.mlp.up.weight"),
        (
            "module.model.layers.0.mlp.up_proj.weight",
            "model.layers.0.mlp.up_proj.weight",
        ),  # str.strip eats 'model'
        ("modules.0.weight", "modules.0.weight"),
        ("mod.weight", "mod.weight"),
        ("submodule.weight", "submodule.weight"),
    ],
)
def test_wrapper_segments_are_removed_anywhere_and_nothing_else(raw, expected):
    assert normalise_name(raw) == expected


@pytest.mark.slow
def test_compiled_model_binds_like_the_bare_model():
    model = _gpt()
    compiled = torch.compile(model)  # wrapping only; nothing is compiled until a forward call
    assert next(iter(compiled.named_parameters()))[0].startswith("_orig_mod.")
    assert _roles(bind(compiled)) == _roles(bind(model))


def test_unbound_parameters_raise_one_error_listing_them_and_the_fix():
    model = nn.Sequential(*[nn.Linear(4, 4) for _ in range(4)])  # 8 parameters, no preset knows them
    with pytest.raises(BindingError) as info:
        bind(model, patterns={"0.weight": "mlp.up"})
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith("error: 7 model parameter(s) match no role")
    assert "'0.bias'" in msg and "(and 2 more)" in msg and "patterns={'*.bias': '<role>'" in msg


def test_unknown_model_without_patterns_names_the_presets():
    with pytest.raises(BindingError, match="no preset recognises model class Sequential; pass preset="):
        bind(nn.Sequential(nn.Linear(2, 2)))


def test_a_parameter_matching_two_roles_is_an_error():
    model = nn.Sequential(nn.Linear(4, 4, bias=False))
    with pytest.raises(BindingError, match=r"match patterns of two roles: '0.weight \(mlp.down vs mlp.up\)'"):
        bind(model, patterns={"*.weight": "mlp.up", "0.*": "mlp.down"})


def test_user_patterns_take_precedence_over_the_preset():
    bound = _roles(bind(_gpt(), patterns={"blocks.*.mlp.down.weight": "mlp.up"}))
    assert bound["blocks.1.mlp.down.weight"] == "mlp.up"
    assert bound["blocks.1.attn.q.weight"] == "attn.q"


def test_unknown_role_and_unknown_preset_are_rejected():
    with pytest.raises(BindingError, match="unknown role 'mlp.upp'"):
        bind(_gpt(), patterns={"x": "mlp.upp"})
    with pytest.raises(BindingError, match="unknown preset 'gpt3'"):
        bind(_gpt(), preset="gpt3")
    with pytest.raises(BindingError, match="needs base_model"):
        bind(_gpt(), preset="infer")


@pytest.mark.parametrize("head_first", [False, True])
def test_tied_embedding_is_planned_once_with_the_embed_role(head_first):
    bound = {b.name: b for b in bind(TiedLM(head_first=head_first), patterns=TIED_PATTERNS)}
    canonical, alias = ("head.weight", "emb.weight") if head_first else ("emb.weight", "head.weight")
    assert alias not in bound
    assert bound[canonical].role == "embed"
    assert bound[canonical].tied_with == (alias,)
    assert (bound[canonical].fan_in, bound[canonical].fan_out) == (32, 16)


def _mlp(width: int) -> nn.Module:
    return nn.Sequential(
        nn.Embedding(10, width), nn.Linear(width, 2 * width), nn.LayerNorm(2 * width), nn.Linear(2 * width, 5)
    )


def test_shape_inference_classifies_by_which_dims_change():
    inferred = infer_roles(_mlp(16), _mlp(8))
    got = {n: (c.changed, c.width_class, c.role) for n, c in inferred.items()}
    assert got == {
        "0.weight": ("out", "input", "embed"),
        "1.weight": ("both", "hidden", "mlp.up"),
        "1.bias": ("out", "vector", "bias"),
        "2.weight": ("out", "vector", "norm"),
        "2.bias": ("out", "vector", "bias"),
        "3.weight": ("in", "output", "unembed"),
        "3.bias": ("none", "vector", "bias"),
    }


def test_inferred_width_classes_match_the_gpt_preset_once_the_lookup_table_is_named():
    preset = {b.name: b.width_class for b in bind(_gpt(32))}
    inferred = bind(_gpt(64), preset="infer", base_model=_gpt(32), patterns={"embed.weight": "embed"})
    assert {b.name: ROLES[b.role] for b in inferred} == preset
    # Without the pattern, a custom (V, n) lookup table reads like the readout by its shapes alone; the module
    # graph sees it read at integer indices and makes it the embedding.
    assert infer_roles(_gpt(64), _gpt(32))["embed.weight"].width_class == "input"


def test_shape_inference_rejects_models_that_do_not_correspond():
    with pytest.raises(BindingError, match="base_model lacks 'blocks.0.attn.q_norm.weight', 'blocks.0.attn.k_norm"):
        bind(_gpt(64), preset="infer", base_model=_gpt(32, qk_norm=False))
    with pytest.raises(BindingError, match="identical shapes"):
        bind(_gpt(32), preset="infer", base_model=_gpt(32))


def _nanogpt(width: int = 16) -> nn.Module:
    """nanoGPT's names (the hf-gpt2 names) but nn.Linear layers, stored (out, in) unlike HF's Conv1D."""

    def block() -> nn.Module:
        return nn.ModuleDict(
            {
                "ln_1": nn.LayerNorm(width),
                "attn": nn.ModuleDict({"c_attn": nn.Linear(width, 3 * width), "c_proj": nn.Linear(width, width)}),
                "ln_2": nn.LayerNorm(width),
                "mlp": nn.ModuleDict({"c_fc": nn.Linear(width, 4 * width), "c_proj": nn.Linear(4 * width, width)}),
            }
        )

    model = nn.Module()
    model.transformer = nn.ModuleDict(
        {
            "wte": nn.Embedding(32, width),
            "wpe": nn.Embedding(8, width),
            "h": nn.ModuleList([block()]),
            "ln_f": nn.LayerNorm(width),
        }
    )
    model.lm_head = nn.Linear(width, 32, bias=False)
    model.lm_head.weight = model.transformer.wte.weight
    return model


def test_module_class_fixes_the_layout_where_the_preset_assumes_conv1d():
    bound = {b.name: b for b in bind(_nanogpt())}  # auto: picked by parameter names
    c_attn = bound["transformer.h.0.attn.c_attn.weight"]
    assert c_attn.shape == (48, 16) and (c_attn.fan_in, c_attn.fan_out) == (16, 48)
    assert (bound["transformer.wte.weight"].fan_in, bound["transformer.wte.weight"].fan_out) == (32, 16)
    assert bound["transformer.wte.weight"].tied_with == ("lm_head.weight",)


@pytest.mark.parametrize("qk_norm", [True, False])
def test_module_graph_infers_every_role_of_the_bundled_gpt_as_its_preset_names_it(qk_norm):
    preset = _roles(bind(_gpt(64, qk_norm)))
    inferred = bind(_gpt(64, qk_norm), preset="infer", base_model=_gpt(32, qk_norm))
    assert _roles(inferred) == preset  # a custom (V, n) lookup table too: it is read at integer indices
    assert {b.source for b in inferred} == {"graph", "inferred"}  # the readout's role is its width class's
