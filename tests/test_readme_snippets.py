"""The README's Python snippets run as printed (API tour, own-model example)."""

from __future__ import annotations

import torch
from torch import nn

import scalec
from scalec.runtime import make_plan


class Block(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.ln = nn.RMSNorm(d)
        self.up, self.down = nn.Linear(d, 4 * d, bias=False), nn.Linear(4 * d, d, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.down(torch.relu(self.up(self.ln(x))))


class MyModel(nn.Module):
    """A user's model: nothing scalec-specific in it."""

    def __init__(self, d: int = 256, depth: int = 6, vocab: int = 256) -> None:
        super().__init__()
        self.tok = nn.Embedding(vocab, d)
        self.blocks = nn.ModuleList(Block(d) for _ in range(depth))
        self.head = nn.Linear(d, vocab, bias=False)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.tok(idx)
        for b in self.blocks:
            x = b(x)
        return self.head(x)


def test_own_model_snippet_plans_folds_and_trains():
    torch.manual_seed(0)
    model = MyModel(d=256, depth=6)
    # --- README snippet ---
    rules = scalec.load("completedp", fold=True)  # fold what the model does not apply into init + lr
    roles = {
        "tok.weight": "embed",
        "*.up.weight": "mlp.up",
        "*.down.weight": "mlp.down",
        "*.ln.weight": "norm",
        "head.weight": "unembed",
    }
    plan = make_plan(rules, model, {"n": 256, "L": 6, "B": 2**14, "D": 2**28}, hp={"eta": 2**-7}, patterns=roles)
    plan.init_(model)
    opt = torch.optim.AdamW(plan.param_groups(model), fused=True)
    print(plan.folded)  # ['residual.mlp -> mlp.down (x m_L**(-alpha))', ...]
    # --- end ---
    assert plan.folded == ["residual.mlp -> mlp.down (x m_L**(-alpha))"]
    # Folding removed every multiplier this model has no hook for (residual and readout).
    assert plan.multipliers["residual.mlp"] == 1.0 and plan.multipliers["output.mult"] == 1.0
    ref = scalec.load("completedp")
    shape = ref.shape(n=256, L=6, B=2**14, D=2**28)
    unfolded = ref.role_hparams("mlp.down", shape, ref.hparams(eta=2**-7))
    down = next(e for e in plan.entries if e.name == "blocks.0.down.weight")
    assert down.lr != unfolded.lr  # the residual multiplier m_L^-1 moved into mlp.down's lr and init
    x = torch.randint(0, 256, (4, 32))
    losses = []
    for _ in range(3):
        loss = nn.functional.cross_entropy(model(x).flatten(0, 1), x.flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_api_tour_snippet():
    from scalec.compiler.analysis import desiderata, equivalence

    p = scalec.load("completedp")
    shape = p.shape(n=1024, L=24, B=2**14, D=2**30)
    hp = p.hparams(eta=2**-7, **{"lr[mlp.down]": 2.0})
    r = p.role_hparams("attn.q", shape, hp)
    assert r.lr > 0 and 0 <= r.beta1 < 1
    assert set(p.sites(shape, hp).as_dict()) >= {"residual.attn", "attn.scale", "output.mult"}
    assert desiderata(p).width_class == "muP-like (stable, maximal updates)"
    assert equivalence(scalec.load("mup"), scalec.load("mup_table3")).equivalent
