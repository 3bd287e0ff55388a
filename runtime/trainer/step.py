"""One optimizer step, and the step statistics that stay on the device until a log step reads them.

Nothing here waits for the device: the loss and the grad norm are device tensors, and a non-finite watch
(torchtitan-style) accumulates on the device, so the loop syncs with the host only at log steps. A step with a
non-finite loss or grad norm still updates (skipping it would need the host); the loop stops at the next log step,
reports the first bad step and never checkpoints past it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


def train_step(
    forward: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    optimizer: torch.optim.Optimizer,
    params: list[torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    micro: int,
    autocast: Callable[[], Any],
    grad_clip: float | None,
    ddp: Any = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One step over the batch (x, y), already on the device, in micro-batches of `micro` sequences.

    Returns the batch's mean loss and the pre-clip grad norm (None without clipping) as device tensors.
    """
    accum = x.shape[0] // micro
    total = None
    for i in range(accum):
        # DDP all-reduces gradients on the last micro-batch only.
        with contextlib.nullcontext() if ddp is None or i == accum - 1 else ddp.no_sync():
            with autocast():
                loss = forward(x[i * micro : (i + 1) * micro], y[i * micro : (i + 1) * micro])
            loss = loss / accum  # gradients of the mean over the whole batch, not the sum of micro-batch means
            loss.backward()
        total = loss.detach() if total is None else total + loss.detach()
    norm = torch.nn.utils.clip_grad_norm_(params, grad_clip, foreach=True) if grad_clip else None
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return total, norm


@dataclass(frozen=True)
class StepReading:
    """Host values of the step statistics at a log step (means over ranks)."""

    loss: float
    grad_norm: float | None
    finite_steps: int  # steps of this process before the first non-finite one (all of them when healthy)
    healthy: bool  # every step of this process so far had a finite loss and grad norm


class StepStats:
    """The last step's loss and grad norm, and a non-finite watch, all on the device."""

    def __init__(self, device: torch.device) -> None:
        self.loss = torch.zeros((), device=device)
        self.norm: torch.Tensor | None = None
        self.healthy = torch.ones((), dtype=torch.bool, device=device)
        self.finite_steps = torch.zeros((), dtype=torch.int64, device=device)

    def update(self, loss: torch.Tensor, norm: torch.Tensor | None) -> None:
        """Record a step (device ops only)."""
        self.loss, self.norm = loss, norm
        self.healthy &= torch.isfinite(loss if norm is None else loss + norm)
        self.finite_steps += self.healthy

    def read(self, world: int = 1) -> StepReading:
        """Wait for the device and read the statistics (log steps only); under DDP, the mean loss over ranks and
        the worst health of any rank."""
        norm = self.norm if self.norm is not None else torch.zeros_like(self.loss)
        mean = torch.stack([self.loss.double(), norm.double()])
        worst = torch.stack([self.healthy.double(), self.finite_steps.double()])
        if world > 1:
            dist.all_reduce(mean)
            mean /= world
            dist.all_reduce(worst, op=dist.ReduceOp.MIN)
        loss, grad_norm, healthy, finite = torch.cat([mean, worst]).tolist()
        return StepReading(loss, grad_norm if self.norm is not None else None, int(finite), healthy == 1.0)
