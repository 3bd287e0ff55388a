"""The runtime plan: values from the generated module, init, AdamW groups, lr scaling, shape checks, CLI."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from typer.testing import CliRunner

import scalec
from scalec.cli import app
from scalec.runtime.plan.planner import Plan, PlanError, make_plan
from scalec.runtime.plan.schedule import scale_lrs
from scalec.runtime.trainer.gpt import GPT, GPTConfig


@pytest.fixture(scope="module")
def rules():
    return scalec.load("completedp")


def _gpt(width: int = 32, depth: int = 2, multipliers=None, qk_norm: bool = True) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(width=width, depth=depth, head_dim=16, seq_len=16, vocab=64, qk_norm=qk_norm), multipliers)


def _shape(width: int = 32, depth: int = 2) -> dict[str, float]:
    return {"n": width, "L": depth, "d_head": 16}


# Complete(d)P at n = 32 (m_N = 1/4 of n0 = 128), L = 4 (m_L = 2), alpha = 1, base B and D, from design.md's
# table and sp.scale's defaults (eta 2^-8, sigma 0.02, lambda 0.1, eps 1e-8):
# role: (init_mean, init_std, lr, weight_decay, eps)
COMPLETEDP_N32_L4 = {
    "embed": (0, 0.02, 2**-8, 0.1, 4e-8),  # eps m_N^-1
    "attn.q": (0, 0.04, 2**-6, 0.025, 2e-8),  # init m_N^-1/2, lr m_N^-1, wd m_N, eps m_N^-1 m_L^-1
    "mlp.down": (0, 0.04, 2**-6, 0.025, 2e-8),
    "norm": (1, 0, 2**-8, 0.1, 2e-8),  # lr m_L^0, eps m_N^-1 m_L^-1
    "qk_norm": (1, 0, 2**-8, 0.1, 5e-9),  # eps m_L^-1
    "final_norm": (1, 0, 2**-8, 0.1, 1e-8),
    "unembed": (0, 0.08, 2**-6, 0.025, 1e-8),  # init m_N^-1, lr m_N^-1, wd m_N
}


def test_every_entry_carries_the_tables_values(rules):
    plan = make_plan(rules, _gpt(depth=4), rules.shape(n=32, L=4, d_head=16))
    assert len(plan.entries) == len(list(_gpt(depth=4).parameters()))
    for e in plan.entries:
        if e.role in COMPLETEDP_N32_L4:
            got = (e.init_mean, e.init_std, e.lr, e.weight_decay, e.eps)
            assert got == pytest.approx(COMPLETEDP_N32_L4[e.role], rel=1e-12), e.name
        assert e.betas == (0.9, 0.95) and e.mult == 1.0
    assert {e.role for e in plan.entries} >= set(COMPLETEDP_N32_L4)
    expected = {
        "residual.attn": 0.5,
        "residual.mlp": 0.5,
        "attn.scale": 32**0.5 / 16,
        "output.mult": 1,
        "embed.mult": 1,
    }
    assert plan.multipliers == pytest.approx(expected, rel=1e-12)


def test_generated_module_and_parameterisation_give_the_same_plan(rules):
    assert make_plan(rules.module, _gpt(), _shape()) == make_plan(rules, _gpt(), _shape())


def test_shape_dict_fills_missing_axes_with_base_values(rules):
    plan = make_plan(rules, _gpt(), {"n": 32, "d_head": 16})
    base = rules.module.BASE
    assert plan.axes == {**dataclasses.asdict(base), "n": 32, "d_head": 16}


@pytest.mark.parametrize(
    "shape, match",
    [
        ({"n": 32, "width": 3}, "unknown axis 'width'"),
        ({"n": 10**9}, "shape: .*n"),
        ({"n": float("nan")}, "axis n 'nan' is not a finite number"),
    ],
)
def test_bad_shapes_raise_one_line_errors_naming_the_axis(rules, shape, match):
    with pytest.raises(PlanError, match=match) as info:
        make_plan(rules, _gpt(), shape)
    assert "\n" not in str(info.value)


def test_hp_overrides_scale_the_plan_and_unknown_names_are_rejected(rules):
    base = make_plan(rules, _gpt(), _shape())
    eta = rules.module.HP_SPACE["eta"].default
    doubled = make_plan(rules, _gpt(), _shape(), hp={"eta": 2 * eta, "lr[mlp.down]": 3.0})
    for a, b in zip(base.entries, doubled.entries, strict=True):
        assert b.lr == pytest.approx(a.lr * (6 if a.role == "mlp.down" else 2))
    with pytest.raises(PlanError, match="unknown hyperparameter 'etaa'"):
        make_plan(rules, _gpt(), _shape(), hp={"etaa": 1.0})
    with pytest.raises(PlanError, match="hp eta 'nan' is not a finite number"):
        make_plan(rules, _gpt(), _shape(), hp={"eta": float("nan")})


def test_init_draws_each_tensor_with_its_planned_mean_and_std(rules):
    model = _gpt(width=64)
    plan = make_plan(rules, model, _shape(64))
    torch.manual_seed(0)
    plan.init_(model)
    params = dict(model.named_parameters())
    for e in plan.entries:
        p = params[e.name]
        if e.init_std == 0:
            assert torch.all(p == e.init_mean), e.name
        else:
            assert p.std().item() == pytest.approx(e.init_std, rel=0.1), e.name
            assert abs(p.mean().item() - e.init_mean) < 4 * e.init_std / p.numel() ** 0.5, e.name
    again = _gpt(width=64)
    torch.manual_seed(0)
    plan.init_(again)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), again.parameters(), strict=True))


@pytest.mark.slow
@pytest.mark.parametrize("impl", [{"fused": True}, {"foreach": True}, {"foreach": False}])
def test_param_groups_merge_identical_settings_and_train_with_adamw(rules, impl):
    model = _gpt()
    plan = make_plan(rules, model, _shape())
    groups = plan.param_groups(model)
    keys = [(g["lr"], g["weight_decay"], g["betas"], g["eps"]) for g in groups]
    assert len(keys) == len(set(keys)) == len({e.optim_key() for e in plan.entries})
    assert sorted(id(p) for g in groups for p in g["params"]) == sorted(id(p) for p in model.parameters())
    by_name = {id(p): n for n, p in model.named_parameters()}
    for g in groups:
        assert g["base_lr"] == g["lr"]
        members = [plan.entry(by_name[id(p)]) for p in g["params"]]
        assert g["roles"] == sorted({e.role for e in members})
        assert all(e.optim_key() == (g["lr"], g["weight_decay"], g["betas"], g["eps"]) for e in members)
    opt = torch.optim.AdamW(groups, **impl)
    tokens = torch.randint(0, 64, (2, 17), generator=torch.Generator().manual_seed(0))
    before = [p.detach().clone() for p in model.parameters()]
    model(tokens[:, :-1], tokens[:, 1:]).backward()
    opt.step()
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_scale_lrs_is_relative_to_each_groups_planned_lr(rules):
    model = _gpt()
    plan = make_plan(rules, model, _shape())
    opt = torch.optim.AdamW(plan.param_groups(model))
    scale_lrs(opt, 0.5)
    scale_lrs(opt, 0.25)  # not compounding: always base_lr * factor
    assert [g["lr"] for g in opt.param_groups] == [g["base_lr"] * 0.25 for g in opt.param_groups]
    plain = torch.optim.AdamW(model.parameters(), lr=0.01)
    scale_lrs(plain, 0.1)
    scale_lrs(plain, 0.5)
    assert plain.param_groups[0]["lr"] == pytest.approx(0.005)


def test_plan_for_another_shape_names_the_parameter_and_both_shapes(rules):
    plan = make_plan(rules, _gpt(width=32), _shape(32))
    with pytest.raises(
        PlanError,
        match=r"parameter 'embed.weight' has shape \[64, 64\] but the plan was made "
        r"for \[64, 32\]",
    ):
        plan.init_(_gpt(width=64))
    with pytest.raises(PlanError, match="lacks planned parameter"):
        plan.param_groups(_gpt(width=32, qk_norm=False))


@pytest.mark.slow
def test_plan_applies_to_a_compiled_model_by_normalised_names(rules):
    model = _gpt()
    plan = make_plan(rules, model, _shape())
    compiled = torch.compile(model)
    plan.check_model(compiled)
    assert sum(len(g["params"]) for g in plan.param_groups(compiled)) == len(plan.entries)


def test_plan_round_trips_through_json_and_is_plain_data(rules):
    plan = make_plan(rules, _gpt(), _shape())
    data = json.loads(plan.to_json())
    assert set(data) >= {"parameters", "multipliers"}
    assert set(data["parameters"][0]) >= {
        "name",
        "shape",
        "role",
        "init_mean",
        "init_std",
        "lr",
        "weight_decay_torch",
        "weight_decay_rule",
        "decay",
        "betas",
        "eps",
        "mult",
    }
    assert Plan.from_json(plan.to_json()) == plan


def test_multipliers_feed_the_bundled_gpt(rules):
    plan = make_plan(rules, _gpt(depth=8), _shape(depth=8), hp={"mult[mlp.gate]": 2.0})
    assert plan.multipliers["mult[mlp.gate]"] == 2.0
    assert "mult[attn.q]" not in plan.multipliers
    model = GPT(GPTConfig(width=32, depth=2, head_dim=16, seq_len=16, vocab=64, qk_norm=True), plan.multipliers)
    assert model.blocks[0].mlp.gate_mult == 2.0


def test_infer_preset_plans_like_the_gpt_preset_up_to_representative_roles(rules):
    patterns = {"embed.weight": "embed", "final_norm.weight": "final_norm"}
    inferred = make_plan(rules, _gpt(64), _shape(64), preset="infer", base_model=_gpt(32), patterns=patterns)
    preset = make_plan(rules, _gpt(64), _shape(64))
    for a, b in zip(inferred.entries, preset.entries, strict=True):
        if a.role != "qk_norm" and b.role != "qk_norm":  # d_head-sized gains do not change with width
            assert (a.init_std, a.lr, a.weight_decay) == (b.init_std, b.lr, b.weight_decay), a.name


# --- CLI ---------------------------------------------------------------------------------------------------

runner = CliRunner()


def test_cli_plan_prints_json_with_parameters_and_multipliers():
    result = runner.invoke(
        app,
        [
            "plan",
            "completedp",
            "--model",
            "gpt",
            "--width",
            "256",
            "--depth",
            "4",
            "--hp",
            "eta=0.01",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert len(data["parameters"]) == 1 + 4 * 9 + 2
    assert data["multipliers"]["residual.mlp"] == pytest.approx(0.5)
    assert data["axes"]["n"] == 256


@pytest.mark.slow
def test_cli_plan_takes_rule_params_and_base_overrides():
    args = ["plan", "completep", "--width", "256", "--depth", "8", "--param", "alpha=1/2", "--base", "n=64,L=2"]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["multipliers"]["residual.attn"] == pytest.approx(4**-0.5)  # m_L = 4, alpha = 1/2
    assert data["multipliers"]["output.mult"] == pytest.approx(1 / 4)  # m_N = 256 / 64
    mlp = next(p for p in data["parameters"] if p["name"] == "blocks.0.mlp.up.weight")
    assert mlp["lr"] == pytest.approx(2**-8 / 4 * 4**-0.5)


@pytest.mark.slow
def test_cli_plan_reads_token_counts_and_powers_like_train():
    args = ["plan", "completedp", "--width", "256", "--depth", "4", "--batch", "2^13", "--duration", "16M"]
    data = json.loads(runner.invoke(app, [*args, "--base", "n=2^6", "--json"]).stdout)
    assert data["axes"]["B"] == 8192 and data["axes"]["D"] == 16_000_000
    assert data["multipliers"]["residual.mlp"] == pytest.approx(1 / 2)  # m_L = 4 / 2
    bad = runner.invoke(app, ["plan", "completedp", "--width", "64", "--depth", "1", "--base", "n=abc"])
    assert bad.exit_code == 1 and "--base n 'abc' is not a number" in bad.output


def _hf_plan(*args: str):
    """Run `scalec plan` on an HF model; skip when transformers (the `hf` extra) is not importable."""
    result = runner.invoke(app, ["plan", *args])
    if result.exit_code and "needs transformers" in result.output:
        pytest.skip("transformers is not importable")
    assert result.exit_code == 0, result.output
    return result


@pytest.mark.slow  # builds an HF model (imports transformers)
def test_cli_plan_hf_llama_on_the_meta_device():
    result = _hf_plan("mup", "--model", "hf-llama", "--width", "64", "--depth", "2", "--json")
    roles = {p["name"]: p["role"] for p in json.loads(result.stdout)["parameters"]}
    assert roles["lm_head.weight"] == "unembed" and roles["model.layers.1.mlp.gate_proj.weight"] == "mlp.gate"


def test_cli_plan_prints_a_table():
    result = runner.invoke(app, ["plan", "mup", "--width", "64", "--depth", "1", "--heads", "2"])
    assert result.exit_code == 0, result.output
    assert "mlp.down" in result.stdout and "output.mult" in result.stdout and "muP plan at n=64" in result.stdout


@pytest.mark.slow  # builds an HF model (imports transformers)
def test_cli_plan_hf_gpt2_shows_the_tied_readout():
    refused = runner.invoke(app, ["plan", "mup", "--model", "hf-gpt2", "--width", "64", "--depth", "1"])
    if "needs transformers" not in refused.output:  # the readout shares wte: its 1/m_N cannot be folded
        assert refused.exit_code == 1 and "output.mult = 2 (cannot be folded" in refused.output
    result = _hf_plan(
        "mup", "--model", "hf-gpt2", "--width", "64", "--depth", "1", "--applied", "output.mult", "--json"
    )
    params = json.loads(result.stdout)["parameters"]
    wte = next(p for p in params if p["name"] == "transformer.wte.weight")
    assert wte["tied_with"] == ["lm_head.weight"] and wte["role"] == "embed"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--width", "10", "--depth", "1"], "not a multiple of the head dimension"),
        (["--width", "64", "--depth", "1", "--hp", "eta"], "'eta' is not NAME=VALUE"),
        (["--width", "64", "--depth", "1", "--model", "gpt9"], "--model 'gpt9' is unknown"),
        (["--width", "64", "--depth", "1", "--hp", "nope=1"], "--hp 'nope': no tunable HP of that name"),
    ],
)
def test_cli_plan_bad_input_is_one_error_line(args, message):
    result = runner.invoke(app, ["plan", "completedp", *args])
    assert result.exit_code == 1
    assert message in result.output and "Traceback" not in result.output


@pytest.mark.slow
def test_plan_applies_to_an_fsdp2_sharded_model(rules):
    dist = pytest.importorskip("torch.distributed")
    if not dist.is_available():
        pytest.skip("torch.distributed is not available")
    from torch.distributed.fsdp import fully_shard

    model = _gpt()
    plan = make_plan(rules, model, _shape())
    dist.init_process_group("gloo", rank=0, world_size=1, store=dist.HashStore())
    try:
        for block in model.blocks:
            fully_shard(block)
        fully_shard(model)
        assert type(model.embed.weight).__name__ == "DTensor"
        plan.init_(model)
        opt = torch.optim.AdamW(plan.param_groups(model))
        tokens = torch.randint(0, 64, (2, 17), generator=torch.Generator().manual_seed(0))
        model(tokens[:, :-1], tokens[:, 1:]).backward()
        opt.step()
        norm = plan.entry("final_norm.weight")
        assert torch.all(model.final_norm.weight.full_tensor() != norm.init_mean)  # trained away from init
    finally:
        dist.destroy_process_group()


def test_plan_json_names_each_weight_decay_number_by_its_convention():
    """mup_indep_wd at n = 512 (n0 = 128): lambda_ind = 1/2560 for every role (the rule's value, an independent
    shrink per step); torch's AdamW receives lambda_ind / lr: hidden lr 2^-8 / 4 = 2^-10 gives 0.4, embed lr 2^-8
    gives 0.1. A plan written before the split (one `weight_decay` key, torch's) still reads."""
    result = runner.invoke(app, ["plan", "mup_indep_wd", "--width", "512", "--depth", "2", "--json"])
    assert result.exit_code == 0, result.output
    data = {p["name"]: p for p in json.loads(result.output)["parameters"]}
    q, embed = data["blocks.0.attn.q.weight"], data["embed.weight"]
    assert "weight_decay" not in q and q["decay"] == "independent"
    assert (q["weight_decay_rule"], q["weight_decay_torch"]) == pytest.approx((1 / 2560, 0.4))
    assert (embed["weight_decay_rule"], embed["weight_decay_torch"]) == pytest.approx((1 / 2560, 0.1))
    coupled = json.loads(runner.invoke(app, ["plan", "mup", "--width", "512", "--depth", "2", "--json"]).output)
    q = next(p for p in coupled["parameters"] if p["name"] == "blocks.0.attn.q.weight")
    assert q["decay"] == "coupled" and q["weight_decay_rule"] == q["weight_decay_torch"] == pytest.approx(0.1 * 4)
    legacy = json.loads(result.output)
    for p in legacy["parameters"]:
        p["weight_decay"] = p.pop("weight_decay_torch")
        del p["weight_decay_rule"]
    assert Plan.from_dict(legacy).entry("blocks.0.attn.q.weight").weight_decay == pytest.approx(0.4)
