"""transformers' `Trainer` with scalec's optimizer: a tiny Llama (built offline from a config) trains a few steps,
and inside the Trainer's optimizer every parameter's lr is muP's, derived by hand, times the schedule's factor."""

from __future__ import annotations

import math

import pytest
import torch

import scalec

pytestmark = pytest.mark.slow  # transformers' import alone is ~5 s

ETA = 2**-7
WIDTH, LAYERS, HEADS = 256, 2, 4  # muP's base width is 128: m_N = 2; d_head = 64 (base 32)


def _transformers():
    try:
        import accelerate  # noqa: F401 - Trainer needs it
        import transformers
    except (ImportError, RuntimeError):  # pragma: no cover - depends on the environment
        pytest.skip("transformers + accelerate (the `hf` extra) are not importable")
    return transformers


def llama(tied: bool):
    tf = _transformers()
    torch.manual_seed(0)
    cfg = tf.LlamaConfig(
        hidden_size=WIDTH,
        intermediate_size=2 * WIDTH,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        num_key_value_heads=HEADS,
        vocab_size=256,
        max_position_embeddings=64,
        tie_word_embeddings=tied,
        bos_token_id=0,
        eos_token_id=0,
    )
    return tf.LlamaForCausalLM(cfg)


class Tokens(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 64

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        ids = torch.randint(0, 256, (16,), generator=torch.Generator().manual_seed(i))
        return {"input_ids": ids, "labels": ids}


def train(model, optimizers, steps: int, tmp_path):
    tf = _transformers()
    args = tf.TrainingArguments(
        output_dir=str(tmp_path),
        max_steps=steps,
        per_device_train_batch_size=4,
        report_to=[],
        use_cpu=True,
        save_strategy="no",
        logging_steps=1,
        disable_tqdm=True,
    )
    trainer = tf.Trainer(model=model, args=args, train_dataset=Tokens(), optimizers=optimizers)
    return trainer, trainer.train()


# muP (Table 8) at m_N = 2, by hand: hidden matrices eta/m_N; embedding, norms and (tied, trained as the
# embedding) readout eta; untied readout: lr eta, its 1/m_N multiplier folded into lr -> eta/2.
HIDDEN = ("attn.q", "attn.k", "attn.v", "attn.o", "mlp.up", "mlp.gate", "mlp.down")
PLANNED = {**{r: ETA / 2 for r in HIDDEN}, "embed": ETA, "norm": ETA, "final_norm": ETA, "unembed": ETA / 2}


def test_trainer_recipe_runs_with_the_planned_lrs_times_the_schedule(tmp_path):
    tf = _transformers()
    model = llama(tied=True)
    # The recipe: scalec's optimizer, the multipliers as hooks, any transformers schedule.
    opt = scalec.optimizer(
        model, "mup", {"n": WIDTH, "L": LAYERS, "d_head": 64}, {"eta": ETA}, applied_sites=scalec.HOOKABLE
    )
    hooks = scalec.apply_multipliers(model, opt.scalec_plan, example=torch.randint(0, 256, (1, 16)))
    scheduler = tf.get_linear_schedule_with_warmup(opt, num_warmup_steps=1, num_training_steps=4)
    # Tied readout 1/m_N on the logits; attention scale sqrt(32)/64 where Llama applies 1/sqrt(64).
    assert hooks.applied == {"output.mult": 0.5, "attn.scale": pytest.approx(math.sqrt(32) / 64)}
    before = model.model.layers[0].mlp.up_proj.weight.detach().clone()
    trainer, out = train(model, (opt, scheduler), 3, tmp_path)
    assert out.global_step == 3 and math.isfinite(out.training_loss)
    assert not torch.equal(before, model.model.layers[0].mlp.up_proj.weight)
    factor = (4 - 3) / (4 - 1)  # linear decay after warmup 1 of 4 steps, after 3 steps
    groups = trainer.optimizer.param_groups  # the Trainer's (accelerate-wrapped) optimizer
    assert trainer.optimizer.optimizer.scalec_plan is opt.scalec_plan
    assert {r for g in groups for r in g["roles"]} == set(PLANNED) - {"unembed"}
    for g in groups:
        for role in g["roles"]:
            assert g["lr"] == pytest.approx(PLANNED[role] * factor, rel=1e-12), role
    by_param = {id(p): g["lr"] for g in groups for p in g["params"]}
    assert by_param[id(model.model.layers[1].self_attn.q_proj.weight)] == pytest.approx(ETA / 2 * factor)
    assert by_param[id(model.lm_head.weight)] == pytest.approx(ETA * factor)  # the tied readout is the embedding


def test_hf_helper_reads_the_shape_from_the_config_and_folds_an_untied_readout(tmp_path):
    from scalec.integrations import hf

    model = llama(tied=False)
    opt, scheduler = hf.optimizers(
        model, "mup", {"eta": ETA}, num_training_steps=4, num_warmup_steps=0, schedule_name="cosine"
    )
    assert opt.scalec_plan.axes["n"] == WIDTH and opt.scalec_plan.axes["d_head"] == 64
    # An untied readout's multiplier is hooked (hooks apply the rule as written); attention scale likewise.
    assert opt.scalec_hooks.applied == {"output.mult": 0.5, "attn.scale": pytest.approx(math.sqrt(32) / 64)}
    trainer, out = train(model, (opt, scheduler), 2, tmp_path)
    factor = 0.5 * (1 + math.cos(math.pi * 2 / 4))  # cosine after 2 of 4 steps
    planned = {**PLANNED, "unembed": ETA}  # hooked, not folded: the readout keeps muP's unscaled lr
    for g in trainer.optimizer.param_groups:
        for role in g["roles"]:
            assert g["lr"] == pytest.approx(planned[role] * factor, rel=1e-12), role
    opt.scalec_hooks.remove()


def test_hf_helper_steps_a_muon_plan_with_one_schedule_per_torch_optimizer(tmp_path):
    from scalec.integrations import hf

    model = llama(tied=False)
    opt, scheduler = hf.optimizers(model, "muon", num_training_steps=4, schedule_name="linear")
    assert isinstance(opt, scalec.runtime.PlanOptimizer)
    planned = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    trainer, out = train(model, (opt, scheduler), 2, tmp_path)
    assert out.global_step == 2 and math.isfinite(out.training_loss)
    for g in trainer.optimizer.param_groups:
        for p in g["params"]:
            assert g["lr"] == pytest.approx(planned[id(p)] * (4 - 2) / 4, rel=1e-12)


def test_hf_helper_refuses_a_model_without_a_config():
    from scalec.integrations import hf

    with pytest.raises(hf.HFIntegrationError, match=r"^error: Linear has no config stating its n and L; pass shape="):
        hf.optimizers(torch.nn.Linear(4, 4), "mup", num_training_steps=4)


def test_gpt2_fused_qkv_attention_scale_is_hooked_on_its_query_slice():
    # muP's attention scale sqrt(32)/64 at d_head 64, where GPT-2 applies 1/8: its fused c_attn's query columns
    # (Conv1D weight[:, :n] and bias[:n]) x 1/sqrt(2) compute the same forward by hand.
    from scalec.integrations import hf

    tf = _transformers()
    torch.manual_seed(0)
    cfg = tf.GPT2Config(n_embd=128, n_layer=2, n_head=2, vocab_size=256, n_positions=64, bos_token_id=0, eos_token_id=0)
    model = tf.GPT2LMHeadModel(cfg).eval()
    opt, _ = hf.optimizers(model, "mup", num_training_steps=4)
    assert opt.scalec_hooks.applied == {"attn.scale": pytest.approx(math.sqrt(32) / 64)}  # n = n0: no 1/m_N
    ids = torch.randint(0, 256, (2, 12))
    hooked = model(ids).logits
    opt.scalec_hooks.remove()
    with torch.no_grad():
        for block in model.transformer.h:
            block.attn.c_attn.weight[:, :128] *= 2**-0.5
            block.attn.c_attn.bias[:128] *= 2**-0.5
    torch.testing.assert_close(hooked, model(ids).logits, rtol=1e-5, atol=1e-6)
