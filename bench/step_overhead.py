"""Per-step cost of a compiled plan's AdamW param groups vs one plain AdamW group on the same GPT.

Both arms train the same model (same init, same forward multipliers); only the optimizer differs. Blocks of
steps alternate between the arms (ABBA order) in one process, and the ratio of median per-step times is
printed. Usage: .venv/bin/python bench/step_overhead.py [--rule completedp] [--width 128] [--device cpu]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

import scalec
from scalec.runtime.plan.planner import make_plan
from scalec.runtime.trainer.gpt import GPT, GPTConfig


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _block(model: GPT, opt: torch.optim.Optimizer, batch: torch.Tensor, steps: int, device: str) -> float:
    """Seconds per step over `steps` training steps."""
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        loss = model(batch[:, :-1], batch[:, 1:])
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    _sync(device)
    return (time.perf_counter() - t0) / steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rule", default="completedp")
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--batch", type=int, default=8, help="sequences per step")
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--steps", type=int, default=10, help="steps per timed block")
    ap.add_argument("--reps", type=int, default=10, help="timed blocks per arm")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads (1 keeps shared machines quieter)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = args.device
    fused = {"fused": True}
    cfg = GPTConfig(width=args.width, depth=args.depth, head_dim=32, seq_len=args.seq)
    rules = scalec.load(args.rule)
    probe = GPT(cfg)
    plan = make_plan(rules, probe, {"n": args.width, "L": args.depth, "d_head": cfg.head_dim})
    model_a = plan.init_(GPT(cfg, plan.multipliers)).to(device)
    model_b = copy.deepcopy(model_a)
    opt_a = torch.optim.AdamW(plan.param_groups(model_a), **fused)
    base = plan.entry("blocks.0.mlp.up.weight")
    opt_b = torch.optim.AdamW(
        model_b.parameters(),
        lr=base.lr,
        weight_decay=base.weight_decay,
        betas=base.betas,
        eps=base.eps,
        **fused,
    )
    batch = torch.randint(
        0,
        cfg.vocab,
        (args.batch, args.seq + 1),
        device=device,
        generator=torch.Generator(device=device).manual_seed(1),
    )
    arms = {"plan": (model_a, opt_a), "plain": (model_b, opt_b)}
    for model, opt in arms.values():  # warm-up: allocate optimizer state, settle kernels/caches
        _block(model, opt, batch, 3, device)
    times: dict[str, list[float]] = {"plan": [], "plain": []}
    for rep in range(args.reps):
        order = ("plan", "plain") if rep % 2 == 0 else ("plain", "plan")
        for arm in order:
            times[arm].append(_block(*arms[arm], batch, args.steps, device))
    med = {arm: statistics.median(t) for arm, t in times.items()}
    step_only: dict[str, list[float]] = {"plan": [], "plain": []}
    for rep in range(args.reps):  # the optimizer step alone (grads from the last backward stay in place)
        for arm in ("plan", "plain") if rep % 2 == 0 else ("plain", "plan"):
            model, opt = arms[arm]
            model(batch[:, :-1], batch[:, 1:]).backward()
            _sync(device)
            t0 = time.perf_counter()
            for _ in range(args.steps):
                opt.step()
            _sync(device)
            step_only[arm].append((time.perf_counter() - t0) / args.steps)
            opt.zero_grad(set_to_none=True)
    opt_med = {arm: statistics.median(t) for arm, t in step_only.items()}
    print(
        f"device={device} threads={args.threads} rule={args.rule} width={args.width} depth={args.depth} "
        f"groups={len(opt_a.param_groups)} vs 1, {args.reps}x{args.steps} steps per arm (ABBA)"
    )
    print(f"median step: plan groups {med['plan'] * 1e3:.3f} ms, one group {med['plain'] * 1e3:.3f} ms")
    print(f"ratio plan/plain = {med['plan'] / med['plain']:.4f}  (target <= 1.02)")
    print(
        f"optimizer.step() alone: plan groups {opt_med['plan'] * 1e3:.3f} ms, one group {opt_med['plain'] * 1e3:.3f} ms"
    )


if __name__ == "__main__":
    main()
