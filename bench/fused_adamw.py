"""Fused AdamW against foreach AdamW on the coordinate checks' steps: CPU seconds of `--steps` training steps
(forward, backward, optimizer step) of the bundled GPT under a rule's plan, and of the optimizer step alone, the
two arms alternating (ABAB) in one process so load hits both alike.

    python bench/fused_adamw.py --rule completep --rounds 4
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

import scalec
from scalec.runtime.studies.coord_check import CoordCheckConfig, load_batches
from scalec.runtime.studies.coord_subject import GPTSubject

SHAPES = ((64, 2), (256, 2), (512, 2), (64, 16))


def measure(rules, width: int, depth: int, fused: bool, cfg: CoordCheckConfig, batches, probe) -> tuple[float, float]:
    """(CPU s of the whole steps, CPU s of optimizer.step alone) over cfg.steps steps."""
    plan, gcfg = GPTSubject().plan(rules, width, depth, cfg)
    from scalec.runtime.trainer.gpt import GPT

    torch.manual_seed(0)
    model = plan.init_(GPT(gcfg, plan.multipliers))
    opt = plan.optimizer(model) if fused else plan.optimizer(model, fused=False, foreach=True)
    assert bool(opt.defaults.get("fused")) == fused
    whole = step = 0.0
    for t in range(cfg.steps):
        start = time.process_time()
        model(batches[t].x, batches[t].y).backward()
        mid = time.process_time()
        opt.step()
        opt.zero_grad(set_to_none=True)
        end = time.process_time()
        whole, step = whole + end - start, step + end - mid
    return whole, step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rule", default="completep")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--steps", type=int, default=10)
    args = ap.parse_args()
    torch.set_num_threads(1)
    rules = scalec.load(args.rule)
    cfg = CoordCheckConfig(steps=args.steps, seeds=1)
    batches, probe = load_batches(None, cfg)
    print(f"torch {torch.__version__}, 1 thread, rule {args.rule}, load average {os.getloadavg()[0]:.1f}")
    print("| width x depth | steps fused s | steps foreach s | ratio | opt.step fused s | opt.step foreach s | ratio |")
    print("|---|---|---|---|---|---|---|")
    for width, depth in SHAPES:
        runs: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
        for r in range(args.rounds):
            for fused in (True, False) if r % 2 == 0 else (False, True):
                runs[fused].append(measure(rules, width, depth, fused, cfg, batches, probe))
        f_all, u_all = (statistics.median(x[0] for x in runs[k]) for k in (True, False))
        f_opt, u_opt = (statistics.median(x[1] for x in runs[k]) for k in (True, False))
        print(
            f"| {width} x {depth} | {f_all:.3f} | {u_all:.3f} | {u_all / f_all:.3f} | {f_opt:.4f} | {u_opt:.4f} "
            f"| {u_opt / f_opt:.2f} |",
            flush=True,
        )
    print(f"ratio = foreach / fused (above 1: fused is faster); load average at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
