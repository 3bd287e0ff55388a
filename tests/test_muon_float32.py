"""Float32Muon against the reference it replaces on CPU: torch.optim.Muon (bf16 Newton-Schulz)."""

from __future__ import annotations

import pytest
import torch

from scalec.runtime.plan.muon_float32 import Float32Muon


def _run(cls, nesterov: bool, adjust: str | None, shape=(48, 32), steps=3) -> torch.Tensor:
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(*shape))
    opt = cls([w], lr=0.05, weight_decay=0.1, momentum=0.9, nesterov=nesterov, adjust_lr_fn=adjust)
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        w.grad = torch.randn(*shape, generator=gen)
        opt.step()
    return w.detach()


@pytest.mark.parametrize("adjust", ["original", "match_rms_adamw"])
@pytest.mark.parametrize("nesterov", [True, False])
@pytest.mark.parametrize("shape", [(48, 32), (32, 48)])
def test_float32_muon_agrees_with_torch_muon_to_bf16_precision(nesterov, adjust, shape):
    start = _run(torch.optim.Muon, nesterov, adjust, shape, steps=0)
    ref, ours = _run(torch.optim.Muon, nesterov, adjust, shape), _run(Float32Muon, nesterov, adjust, shape)
    moved = (ref - start).norm()
    assert moved > 0.1  # the three steps moved the weights
    assert (ours - ref).norm() / moved < 0.02  # bf16 Newton-Schulz carries ~1 % error per step
    # The other momentum form is far off: the comparison can tell nesterov from plain momentum.
    other = _run(Float32Muon, not nesterov, adjust, shape)
    assert (other - ref).norm() / moved > 0.05


def test_plan_optimizer_uses_float32_muon_on_cpu_and_keeps_the_state_format():
    import scalec
    from scalec.runtime.plan.planner import make_plan
    from scalec.runtime.trainer.gpt import GPT, GPTConfig

    cfg = GPTConfig(width=32, depth=2, seq_len=16)
    model = GPT(cfg)
    plan = make_plan(scalec.load("muon"), model, {"n": 32, "L": 2, "d_head": cfg.head_dim})
    opt = plan.optimizer(model)
    muon = opt.optimizers["muon"]
    assert type(muon) is Float32Muon
    x = torch.randint(0, 256, (2, 16))
    model(x, x).backward()
    opt.step()
    state = muon.state_dict()
    reference = torch.optim.Muon(plan.param_groups(model, optimizer="muon"))
    reference.load_state_dict(state)  # a checkpoint moves between the two
    assert all("momentum_buffer" in s for s in state["state"].values())
