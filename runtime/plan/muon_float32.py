"""torch.optim.Muon with its Newton-Schulz iteration in float32, for CPU runs.

torch's Muon orthogonalises every update in bfloat16. CPUs without bf16 matrix units run bf16 matmuls far slower
than fp32 ones (8.7x at 512x512 on the 2-core EPYC container, `bench/RESULTS.md`), which made Muon studies on CPU
impractical. This class is the same algorithm (same hyperparameters, same `momentum_buffer` state, so
checkpoints move between the two) with the iteration in float32: more exact, not less. `build_optimizer` uses it
for Muon groups whose parameters are all on the CPU; on CUDA, torch's Muon runs unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch


def newton_schulz_float32(
    update: torch.Tensor, coefficients: tuple[float, float, float], steps: int, eps: float
) -> torch.Tensor:
    """The quintic Newton-Schulz orthogonalisation torch's Muon applies (Jordan et al. 2024), in float32."""
    a, b, c = coefficients
    x = update.float()
    wide = x.size(0) > x.size(1)
    if wide:
        x = x.T
    x = x / x.norm().clamp(min=eps)  # spectral norm <= Frobenius norm <= 1
    for _ in range(steps):
        gram = x @ x.T
        x = torch.addmm(x, torch.addmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return x.T if wide else x


def adjusted_lr(lr: float, mode: str | None, shape: torch.Size) -> float:
    """torch's Muon lr adjustment: "original" max(1, A/B)^1/2, "match_rms_adamw" 0.2 max(A, B)^1/2 (A x B = shape)."""
    rows, cols = shape[:2]
    if mode is None or mode == "original":
        return lr * math.sqrt(max(1.0, rows / cols))
    if mode == "match_rms_adamw":
        return lr * 0.2 * math.sqrt(max(rows, cols))
    return lr


class Float32Muon(torch.optim.Muon):
    """torch.optim.Muon, Newton-Schulz in float32 (see the module docstring)."""

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params: list[torch.Tensor] = []
            grads: list[torch.Tensor] = []
            buffers: list[torch.Tensor] = []
            self._init_group(group, params, grads, buffers)
            lr, wd, momentum = float(group["lr"]), group["weight_decay"], group["momentum"]
            for p, g, buf in zip(params, grads, buffers, strict=True):
                buf.lerp_(g, 1 - momentum)
                update = g.lerp(buf, momentum) if group["nesterov"] else buf
                ortho = newton_schulz_float32(update, group["ns_coefficients"], group["ns_steps"], group["eps"])
                p.mul_(1 - lr * wd)
                p.add_(ortho.to(p.dtype), alpha=-adjusted_lr(lr, group["adjust_lr_fn"], p.shape))
        return loss
