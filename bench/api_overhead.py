"""What the one-line API costs per training step, against calling the same objective directly (width 256).

Arm "direct": a model that computes the rule's forward multipliers itself (constructor arguments) and an AdamW
over hand-written param groups: a parameterisation ported by hand. Arm "api": the plain model (no multiplier
arguments) after `scalec.optimizer(...)` and `scalec.apply_multipliers(...)`: binding, planning, init and the
hooks' proofs once, the hooks on every step. Both arms start from the same weights with the same groups, and their
losses are checked to agree. Blocks of steps (default one step) alternate between the arms (ABBA) in one
process; the per-step ratio is the median over blocks, with a bootstrap 90 % interval, of CPU time (this
process's, which other jobs on a shared machine move less) and of wall time. The one-off setup is timed on fresh
models and spread over --run-steps.
Usage: .venv/bin/python bench/api_overhead.py [--rule completep] [--width 256] [--blocks 150] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

import scalec

V = 256


class Attention(nn.Module):
    def __init__(self, d: int, heads: int, scale: float | None) -> None:
        super().__init__()
        self.heads, self.scale = heads, scale
        self.q, self.k, self.v, self.o = (nn.Linear(d, d, bias=False) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (self.q(x), self.k(x), self.v(x)))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=self.scale)
        return self.o(y.transpose(1, 2).reshape(b, t, d))


class Block(nn.Module):
    def __init__(self, d: int, heads: int, residual: float, scale: float | None) -> None:
        super().__init__()
        self.residual = residual
        self.ln_a, self.ln = nn.RMSNorm(d), nn.RMSNorm(d)
        self.attn = Attention(d, heads, scale)
        self.up, self.down = nn.Linear(d, 4 * d, bias=False), nn.Linear(4 * d, d, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.residual
        x = x + (self.attn(self.ln_a(x)) if r == 1.0 else r * self.attn(self.ln_a(x)))
        return x + (self.down(F.gelu(self.up(self.ln(x)))) if r == 1.0 else r * self.down(F.gelu(self.up(self.ln(x)))))


class Net(nn.Module):
    """A decoder; `residual`, `logit` and `scale` are the multipliers a hand port writes into the model."""

    def __init__(self, d: int, depth: int, heads: int, residual=1.0, logit=1.0, scale: float | None = None) -> None:
        super().__init__()
        self.logit = logit
        self.tok = nn.Embedding(V, d)
        self.blocks = nn.ModuleList(Block(d, heads, residual, scale) for _ in range(depth))
        self.norm = nn.RMSNorm(d)
        self.head = nn.Linear(d, V, bias=False)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.tok(idx)
        for b in self.blocks:
            x = b(x)
        out = self.head(self.norm(x))
        return out if self.logit == 1.0 else self.logit * out


ROLES = {
    "tok.weight": "embed",
    "*.q.weight": "attn.q",
    "*.k.weight": "attn.k",
    "*.v.weight": "attn.v",
    "*.o.weight": "attn.o",
    "*.up.weight": "mlp.up",
    "*.down.weight": "mlp.down",
    "*.ln*.weight": "norm",
    "norm.weight": "final_norm",
    "head.weight": "unembed",
}


def objective(model: nn.Module, optimizer, batches: list[torch.Tensor]) -> float:
    """The user's training loop: next-byte prediction, one step per batch; returns the last loss."""
    loss = torch.zeros(())
    for ids in batches:
        logits = model(ids[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, V), ids[:, 1:].reshape(-1))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return float(loss.detach())


def _median_interval(ratios: list[float], resamples: int = 2000) -> tuple[float, float]:
    """5th and 95th percentiles of the median ratio over bootstrap resamples of the blocks."""
    rng = random.Random(0)
    medians = sorted(statistics.median(rng.choices(ratios, k=len(ratios))) for _ in range(resamples))
    return medians[resamples // 20], medians[resamples - 1 - resamples // 20]


def _total_interval(pairs: list[tuple[float, float]], resamples: int = 2000) -> tuple[float, float]:
    """5th and 95th percentiles of sum(api) / sum(direct) over bootstrap resamples of the block pairs."""
    rng = random.Random(0)
    out = []
    for _ in range(resamples):
        pick = rng.choices(pairs, k=len(pairs))
        out.append(sum(a for a, _ in pick) / sum(d for _, d in pick))
    out.sort()
    return out[resamples // 20], out[resamples - 1 - resamples // 20]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rule", default="completep")
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--steps", type=int, default=1, help="steps per timed block")
    ap.add_argument("--blocks", type=int, default=150, help="timed blocks per arm")
    ap.add_argument("--setups", type=int, default=5, help="timed setups per arm")
    ap.add_argument("--run-steps", type=int, default=1000, help="run length the one-off setup is spread over")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    d, depth, heads = args.width, args.depth, args.heads
    shape = {"n": d, "L": depth, "d_head": d // heads}
    rules = scalec.load(args.rule)  # once per process, as in any study: not part of a step

    def api_setup() -> tuple[nn.Module, object, object]:
        model = Net(d, depth, heads)
        opt = scalec.optimizer(model, rules, shape, roles=ROLES, applied_sites=scalec.HOOKABLE)
        hooks = scalec.apply_multipliers(model, opt.scalec_plan, example=probe)
        return model, opt, hooks

    probe = torch.randint(0, V, (1, 16), generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    model_api, opt_api, hooks = api_setup()
    plan = opt_api.scalec_plan
    m = plan.multipliers
    hand = {"residual": m["residual.mlp"], "logit": m["output.mult"], "scale": m["attn.scale"]}
    assert m["residual.attn"] == m["residual.mlp"] and set(hooks.applied) <= {
        "residual.attn", "residual.mlp", "output.mult", "attn.scale"
    }  # fmt: skip

    def direct_setup() -> tuple[nn.Module, object]:
        model = Net(d, depth, heads, **hand)
        plan.init_(model)
        groups: dict[tuple, dict] = {}  # what a hand port writes: one group per distinct setting
        for e, p in zip(plan.entries, model.parameters(), strict=True):
            key = (e.lr, e.weight_decay, e.betas, e.eps)
            groups.setdefault(key, {"params": [], "lr": e.lr, "weight_decay": e.weight_decay, "betas": e.betas,
                                    "eps": e.eps})["params"].append(p)  # fmt: skip
        fused = bool(opt_api.defaults.get("fused"))  # the same AdamW kernel as the API's optimizer
        return model, torch.optim.AdamW(list(groups.values()), fused=fused)

    model_direct, opt_direct = direct_setup()
    model_direct.load_state_dict(model_api.state_dict())
    assert [n for n, _ in model_direct.named_parameters()] == [e.name for e in plan.entries]

    gen = torch.Generator().manual_seed(1)

    def draw(steps: int) -> list[torch.Tensor]:
        return [torch.randint(0, V, (args.batch, args.seq + 1), generator=gen) for _ in range(steps)]

    warm = draw(3)  # warm-up: both arms train the same 3 steps from the same state and must agree
    first = {"api": objective(model_api, opt_api, warm), "direct": objective(model_direct, opt_direct, warm)}
    agree = abs(first["api"] - first["direct"]) <= 1e-4 * abs(first["direct"])
    blocks = [draw(args.steps) for _ in range(args.blocks)]  # fresh batches per block, the same for both arms
    times: dict[tuple[str, str], list[float]] = {(a, c): [] for a in ("api", "direct") for c in ("cpu", "wall")}
    losses: dict[str, float] = {}
    arms = {"api": (model_api, opt_api), "direct": (model_direct, opt_direct)}
    for i in range(args.blocks):
        for arm in ("api", "direct") if i % 2 == 0 else ("direct", "api"):
            c0, t0 = time.process_time(), time.perf_counter()
            losses[arm] = objective(*arms[arm], blocks[i])
            times[arm, "cpu"].append((time.process_time() - c0) / args.steps)
            times[arm, "wall"].append((time.perf_counter() - t0) / args.steps)

    setup: dict[str, list[float]] = {"api": [], "direct": []}
    for i in range(args.setups):
        for arm in ("api", "direct") if i % 2 == 0 else ("direct", "api"):
            c0 = time.process_time()
            api_setup() if arm == "api" else direct_setup()
            setup[arm].append(time.process_time() - c0)

    step = {k: statistics.median(v) for k, v in times.items()}
    ratios = {c: [a / b for a, b in zip(times["api", c], times["direct", c], strict=True)] for c in ("cpu", "wall")}
    ratio = {c: statistics.median(r) for c, r in ratios.items()}
    band = {c: _median_interval(r) for c, r in ratios.items()}
    pairs = list(zip(times["api", "cpu"], times["direct", "cpu"], strict=True))
    totals = sum(a for a, _ in pairs) / sum(d for _, d in pairs), _total_interval(pairs)
    once = {k: statistics.median(v) for k, v in setup.items()}
    spread = (once["api"] - once["direct"]) / args.run_steps / step["direct", "cpu"]
    total = ratio["cpu"] - 1 + spread
    load = os.getloadavg()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {args.threads} thread(s);"
          f" load avg {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1/5/15 min)")  # fmt: skip
    print(f"rule {args.rule}, width {d}, depth {depth}, d_head {d // heads}, batch {args.batch} x {args.seq} tokens; "
          f"hooks: {', '.join(f'{k} = {v:.4g}' for k, v in hooks.applied.items())}")  # fmt: skip
    print(f"loss after 3 warm-up steps: api {first['api']:.6f}, direct {first['direct']:.6f} "
          f"({'agree' if agree else 'DISAGREE'}); {args.blocks} blocks x {args.steps} step(s) per arm, ABBA; "
          f"final losses api {losses['api']:.4f}, direct {losses['direct']:.4f}")  # fmt: skip
    for c in ("cpu", "wall"):
        print(f"median {c} time per step: api {step['api', c] * 1e3:.2f} ms, direct {step['direct', c] * 1e3:.2f} ms; "
              f"ratio (median of blocks) {ratio[c]:.4f}, 90 % interval {band[c][0]:.4f}-{band[c][1]:.4f}")  # fmt: skip
    print(f"ratio of total CPU time {totals[0]:.4f}, 90 % interval {totals[1][0]:.4f}-{totals[1][1]:.4f}")
    print(f"one-off setup (CPU): api {once['api'] * 1e3:.1f} ms (bind, plan, init, AdamW, hook proofs), direct "
          f"{once['direct'] * 1e3:.1f} ms (init, AdamW); spread over {args.run_steps} steps: "
          f"{spread * 100:+.3f} % per step")  # fmt: skip
    low, high = (b - 1 + spread for b in band["cpu"])
    print(f"API overhead per step at {args.run_steps} steps (CPU time): {total * 100:+.2f} % "
          f"(90 % interval {low * 100:+.2f} to {high * 100:+.2f} %; goal <= 2 %)")  # fmt: skip


if __name__ == "__main__":
    main()
