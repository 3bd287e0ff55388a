"""Per-step cost of training your model the way `scalec.sweep(..., build=, objective=)` hands it to your objective
(bound, planned, hooked, the plan's optimizer) vs the same model and the same param groups in a plain torch loop.

The two arms share the weights' values and the groups' settings; arm A carries the forward hooks scalec installs
(here muP's readout multiplier), arm B applies nothing (its loss differs; only time is compared). Blocks of steps
alternate between the arms (ABBA order) in one process and the ratio of median per-step times is printed, with
the one-time cost of binding and planning. Usage: .venv/bin/python bench/user_objective_overhead.py [--width 256]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

import scalec
from scalec.runtime.studies.user_model import UserModel


def mlp(width: int, depth: int) -> nn.Module:
    """The README's MLP: 8 inputs -> `depth` hidden layers of `width` -> 1 output."""
    layers: list[nn.Module] = [nn.Linear(8, width), nn.ReLU()]
    for _ in range(depth):
        layers += [nn.Linear(width, width), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(width, 1))


def _block(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, steps: int) -> float:
    """Seconds per step over `steps` full-batch regression steps (the objective's loop)."""
    t0 = time.perf_counter()
    for _ in range(steps):
        loss = F.mse_loss(model(x).squeeze(-1), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return (time.perf_counter() - t0) / steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rule", default="mup")
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--steps", type=int, default=20, help="steps per timed block")
    ap.add_argument("--reps", type=int, default=10, help="timed blocks per arm")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rules = scalec.load(args.rule)
    setup = []
    for _ in range(2):  # the first in a process also pays one-time imports; the second is what each run costs
        t0 = time.perf_counter()
        model_a, plan, hooks = UserModel(mlp).bind(rules, args.width, args.depth, 0, None)
        opt_a = plan.optimizer(model_a)
        setup.append(time.perf_counter() - t0)
    model_b = copy.deepcopy(model_a)
    hooks_b = list(model_b._forward_hooks)
    model_b._forward_hooks.clear()  # the copy carries no multiplier hook
    groups = [{**{k: v for k, v in g.items() if k != "params"}, "params": []} for g in opt_a.param_groups]
    index = {id(p): i for i, g in enumerate(opt_a.param_groups) for p in g["params"]}
    for p_a, p_b in zip(model_a.parameters(), model_b.parameters(), strict=True):
        groups[index[id(p_a)]]["params"].append(p_b)
    opt_b = torch.optim.AdamW(groups)
    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(args.batch, 8, generator=g), torch.randn(8, generator=g)
    y = torch.sin(x @ w)
    for model, opt in ((model_a, opt_a), (model_b, opt_b)):
        _block(model, opt, x, y, 3)  # warm-up
    times: dict[str, list[float]] = {"scalec": [], "plain": []}
    for rep in range(args.reps):
        order = (("scalec", model_a, opt_a), ("plain", model_b, opt_b))
        for name, model, opt in order if rep % 2 == 0 else order[::-1]:
            times[name].append(_block(model, opt, x, y, args.steps))
    a, b = statistics.median(times["scalec"]), statistics.median(times["plain"])
    print(f"{args.rule}, MLP width {args.width}, depth {args.depth}, batch {args.batch}, {args.threads} thread(s)")
    print(f"hooks on the scalec arm: {len(hooks.handles)} (removed from the plain copy: {len(hooks_b)})")
    print(f"bind + plan + init + optimizer: first in the process {setup[0] * 1e3:.1f} ms, then {setup[1] * 1e3:.1f} ms")
    print(f"median step: scalec {a * 1e3:.3f} ms, plain {b * 1e3:.3f} ms, ratio {a / b:.4f}")


if __name__ == "__main__":
    main()
