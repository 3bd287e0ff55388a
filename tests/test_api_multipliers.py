"""`scalec.apply_multipliers`: the forward multipliers a model does not apply, as removable hooks. The hooked
model's outputs equal forwards written out by hand with the rule's multipliers (muP's tied readout 1/m_N,
CompleteP's residual 1/m_L, muP's attention scale sqrt(d_head0)/d_head), removing the handles restores the
original forward bit for bit, and the hooks hold under torch.compile, DDP and FSDP2 (gloo, one CPU process)."""

from __future__ import annotations

import copy
import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import scalec
from scalec.runtime import MultiplierHookError

V = 256


class Attention(nn.Module):
    """Causal self-attention with q, k, v as three matrices, or fused as [q; k; v] (GPT-2) or per head
    interleaved [q_h, k_h, v_h] (a layout whose first third is not the queries)."""

    def __init__(self, d: int, heads: int, layout: str = "separate") -> None:
        super().__init__()
        self.heads, self.layout, self.scale = heads, layout, None  # scale None: SDPA's 1/sqrt(d_head)
        if layout == "separate":
            self.q, self.k, self.v = (nn.Linear(d, d, bias=False) for _ in range(3))
        else:
            self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.o = nn.Linear(d, d, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        h = self.heads
        if self.layout == "separate":
            q, k, v = self.q(x), self.k(x), self.v(x)
        elif self.layout == "fused":
            q, k, v = self.qkv(x).split(d, dim=-1)
        else:
            q, k, v = self.qkv(x).view(b, t, h, 3, d // h).unbind(3)
        q, k, v = (z.reshape(b, t, h, d // h).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=self.scale)
        return self.o(y.transpose(1, 2).reshape(b, t, d))


class Block(nn.Module):
    def __init__(self, d: int, heads: int, layout: str | None) -> None:
        super().__init__()
        self.attn = Attention(d, heads, layout) if layout else None
        self.ln_a, self.ln = nn.RMSNorm(d), nn.RMSNorm(d)
        self.up, self.down = nn.Linear(d, 4 * d, bias=False), nn.Linear(4 * d, d, bias=False)

    def branches(self, x: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
        return (self.attn(self.ln_a(x)) if self.attn else None), self.down(torch.relu(self.up(self.ln(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.attn is not None:
            x = x + self.attn(self.ln_a(x))
        return x + self.down(torch.relu(self.up(self.ln(x))))


class Net(nn.Module):
    """A user's language model with no multiplier arguments."""

    def __init__(self, d: int = 256, depth: int = 2, heads: int = 4, layout: str | None = None, tied=False) -> None:
        super().__init__()
        self.tok = nn.Embedding(V, d)
        self.blocks = nn.ModuleList(Block(d, heads, layout) for _ in range(depth))
        self.norm = nn.RMSNorm(d)
        self.head = nn.Linear(d, V, bias=False)
        if tied:
            self.head.weight = self.tok.weight

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.tok(idx)
        for b in self.blocks:
            x = b(x)
        return self.head(self.norm(x))


ROLES = {
    "tok.weight": "embed",
    "*.q.weight": "attn.q",
    "*.qkv.weight": "attn.q",
    "*.k.weight": "attn.k",
    "*.v.weight": "attn.v",
    "*.o.weight": "attn.o",
    "*.up.weight": "mlp.up",
    "*.down.weight": "mlp.down",
    "*.ln.weight": "norm",
    "*.ln_a.weight": "norm",
    "norm.weight": "final_norm",
    "head.weight": "unembed",
}


def by_hand(model: Net, idx: torch.Tensor, residual: float, logits: float) -> torch.Tensor:
    """The forward with the rule's residual and logit multipliers written out."""
    x = model.tok(idx)
    for b in model.blocks:
        if b.attn is not None:
            x = x + residual * b.attn(b.ln_a(x))
        x = x + residual * b.down(torch.relu(b.up(b.ln(x))))
    return logits * model.head(model.norm(x))


def planned(model: Net, rule: str, shape: dict, **options) -> scalec.Plan:
    torch.manual_seed(0)
    options = {"roles": ROLES, "applied_sites": scalec.HOOKABLE, **options}
    plan = scalec.plan(model, rule, shape, **options)
    plan.init_(model)
    return plan


IDS = torch.randint(0, V, (2, 12), generator=torch.Generator().manual_seed(1))


def test_tied_mup_readout_multiplies_the_logits_by_one_over_m_n_and_removal_restores():
    model = Net(d=256, tied=True)
    plan = planned(model, "mup", {"n": 256})  # base width 128: m_N = 2, the shared readout's multiplier 1/2
    plain = model(IDS)
    handles = scalec.apply_multipliers(model, plan)
    assert handles.applied == {"output.mult": 0.5}
    assert torch.equal(model(IDS), 0.5 * plain)
    handles.remove()
    assert torch.equal(model(IDS), plain)


def test_completep_residual_and_readout_multipliers_match_the_forward_written_out():
    # CompleteP at n = 256 (n0 = 128), L = 4 (L0 = 2), alpha = 1: branches x 1/m_L = 1/2, logits x 1/m_N = 1/2;
    # d_head 32 = the base: the attention scale is the model's own.
    model = Net(d=256, depth=4, heads=8, layout="separate")
    plan = planned(model, "completep", {"n": 256, "L": 4})
    with scalec.apply_multipliers(model, plan, example=IDS) as handles:
        assert handles.applied == {"residual.attn": 0.5, "residual.mlp": 0.5, "output.mult": 0.5}
        hooked = model(IDS)
    torch.testing.assert_close(hooked, by_hand(model, IDS, residual=0.5, logits=0.5), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(model(IDS), by_hand(model, IDS, residual=1.0, logits=1.0), rtol=0, atol=0)


@pytest.mark.parametrize("layout", ["separate", "fused"])
def test_mup_attention_scale_one_over_d_head_is_applied_to_the_queries(layout):
    # muP's attention scale sqrt(d_head0)/d_head = sqrt(32)/64 at d_head 64, the model's own is 1/sqrt(64).
    model = Net(d=128, heads=2, layout=layout)  # n = n0 = 128: no readout multiplier
    plan = planned(model, "mup", {"n": 128, "d_head": 64})
    handles = scalec.apply_multipliers(model, plan, example=IDS)
    assert handles.applied == {"attn.scale": pytest.approx(math.sqrt(32) / 64)}
    hooked = model(IDS)
    handles.remove()
    for b in model.blocks:
        b.attn.scale = math.sqrt(32) / 64
    torch.testing.assert_close(hooked, model(IDS), rtol=1e-5, atol=1e-6)


def test_attention_hook_check_restores_a_zero_initialised_query():
    model = Net(d=128, heads=2, layout="separate")
    plan = planned(model, "mup", {"n": 128, "d_head": 64})
    with torch.no_grad():
        for b in model.blocks:
            b.attn.q.weight.zero_()  # muP's recommended zero query: the check draws its own weights, then restores
    weights = copy.deepcopy(model.state_dict())
    scalec.apply_multipliers(model, plan, example=IDS)
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())


def test_interleaved_qkv_is_refused_not_scaled_wrongly():
    model = Net(d=128, heads=2, layout="interleaved")
    plan = planned(model, "mup", {"n": 128, "d_head": 64})
    refusal = r"^error: scaling the output of 'blocks\.0\.attn\.qkv' \(bound to attn\.q\) does not scale"
    with pytest.raises(MultiplierHookError, match=refusal):
        scalec.apply_multipliers(model, plan, example=IDS)
    assert all(not m._forward_hooks for m in model.modules())  # nothing left installed


def test_hooks_need_an_example_to_prove_residual_branches():
    model = Net(d=256, depth=4)
    plan = planned(model, "completep", {"n": 256, "L": 4})
    with pytest.raises(MultiplierHookError, match=r"^error: residual multipliers need an example batch"):
        scalec.apply_multipliers(model, plan)
    assert all(not m._forward_hooks for m in model.modules())


def test_a_multiplier_no_hook_reaches_is_refused_unless_the_model_applies_it():
    model = Net(d=256, depth=4)
    plan = planned(model, "umup", {"n": 256, "L": 4}, applied_sites="all")  # u-muP: mult[<hidden>] = fan_in^-1/2
    with pytest.raises(MultiplierHookError, match=r"^error: forward multiplier mult\[mlp\.up\] = 0\.0625 cannot"):
        scalec.apply_multipliers(model, plan, example=IDS)
    own = {k for k in plan.multipliers if k.startswith("mult[") and k not in scalec.HOOKABLE}
    handles = scalec.apply_multipliers(model, plan, example=IDS, model_applies=own)
    # u-muP: branches x m_L^-1/2 = (4/2)^-1/2, the readout's own multiplier fan_in^-1 = 1/256.
    assert handles.applied == {"residual.mlp": pytest.approx(2**-0.5), "mult[unembed]": 1 / 256}


def test_model_applies_names_checked_and_the_bundled_gpt_applies_its_own():
    from scalec.runtime.trainer.gpt import GPT, GPTConfig

    gpt = GPT(GPTConfig(width=64, depth=2))
    plan = scalec.plan(gpt, "completep", {"n": 64, "L": 2})
    assert scalec.apply_multipliers(gpt, plan).applied == {}
    with pytest.raises(MultiplierHookError, match=r"^error: model_applies names 'output\.mul'"):
        scalec.apply_multipliers(Net(), plan, model_applies={"output.mul"})


def test_a_folded_plan_leaves_nothing_to_hook():
    model = Net(d=256, depth=4, heads=8, layout="separate")
    plan = scalec.plan(model, "completep", {"n": 256, "L": 4}, roles=ROLES, fold=True)
    assert scalec.apply_multipliers(model, plan).applied == {}


@pytest.mark.slow
def test_hooks_hold_under_torch_compile_and_removal_reaches_the_compiled_model():
    model = Net(d=128, depth=4, heads=2, layout="separate")
    plan = planned(model, "completep", {"n": 128, "L": 4, "d_head": 64})
    eager_plain = model(IDS)
    handles = scalec.apply_multipliers(model, plan, example=IDS)
    eager_hooked = model(IDS)
    compiled = torch.compile(model, backend="aot_eager")
    torch.testing.assert_close(compiled(IDS), eager_hooked, rtol=1e-5, atol=1e-6)
    compiled(IDS).sum().backward()  # gradients flow through the hooks in the compiled graph
    handles.remove()
    torch.testing.assert_close(compiled(IDS), eager_plain, rtol=1e-5, atol=1e-6)
    # Hooks installed on the compiled wrapper (names with _orig_mod.) reach the same modules.
    scalec.apply_multipliers(compiled, plan, example=IDS)
    torch.testing.assert_close(compiled(IDS), eager_hooked, rtol=1e-5, atol=1e-6)


@pytest.fixture
def gloo(tmp_path):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/pg", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


@pytest.mark.slow
def test_hooks_hold_under_ddp(gloo):
    from torch.nn.parallel import DistributedDataParallel as DDP

    model = Net(d=256, depth=4, heads=8, layout="separate")
    plan = planned(model, "completep", {"n": 256, "L": 4})
    expected = by_hand(model, IDS, residual=0.5, logits=0.5)
    ddp = DDP(model)
    handles = scalec.apply_multipliers(ddp, plan, example=IDS)
    out = ddp(IDS)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)
    out.sum().backward()
    assert model.head.weight.grad is not None
    handles.remove()
    torch.testing.assert_close(ddp(IDS), by_hand(model, IDS, residual=1.0, logits=1.0), rtol=0, atol=0)


@pytest.mark.slow
def test_hooks_hold_under_fsdp2(gloo):
    from torch.distributed.fsdp import fully_shard

    model = Net(d=128, depth=4, heads=2, layout="separate")
    plan = planned(model, "mup", {"n": 128, "L": 4, "d_head": 64})
    reference = copy.deepcopy(model)
    for b in reference.blocks:
        b.attn.scale = math.sqrt(32) / 64
    for b in model.blocks:
        fully_shard(b)
    fully_shard(model)
    plain = model(IDS)
    handles = scalec.apply_multipliers(model, plan, example=IDS)  # the attention check draws and restores DTensors
    out = model(IDS)
    torch.testing.assert_close(out, reference(IDS), rtol=1e-5, atol=1e-6)
    out.sum().backward()
    handles.remove()
    torch.testing.assert_close(model(IDS), plain, rtol=0, atol=0)


def test_handles_apply_under_a_copied_plan_with_unknown_sites_untouched():
    # A plan's JSON round trip keeps what the hooks apply.
    model = Net(d=256, tied=True)
    plan = planned(model, "mup", {"n": 256})
    again = scalec.Plan.from_json(plan.to_json())
    assert scalec.apply_multipliers(model, dataclasses.replace(again)).applied == {"output.mult": 0.5}


def test_embedding_multipliers_scale_each_embedding_output():
    # No bundled rule scales the embedding's output; a plan that does (embed.mult 3, mult[embed] 2) gets x 6.
    model = Net(d=256, depth=2)
    plan = planned(model, "mup", {"n": 256})
    plan = dataclasses.replace(plan, multipliers={**plan.multipliers, "embed.mult": 3.0, "mult[embed]": 2.0})
    handles = scalec.apply_multipliers(model, plan)
    assert handles.applied == {"output.mult": 0.5, "embed.mult": 3.0, "mult[embed]": 2.0}
    x = 6.0 * model.tok.weight[IDS]
    for b in model.blocks:
        x = x + b.down(torch.relu(b.up(b.ln(x))))
    torch.testing.assert_close(model(IDS), 0.5 * model.head(model.norm(x)), rtol=1e-5, atol=1e-6)


def test_a_model_class_declaring_applied_sites_gets_no_hook_for_them():
    class AppliesReadout(Net):
        APPLIED_SITES = ("output.mult",)

    model = AppliesReadout(d=256, tied=True)
    plan = planned(model, "mup", {"n": 256})
    assert scalec.apply_multipliers(model, plan).applied == {}
