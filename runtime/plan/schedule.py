"""LR schedules act relative to each param group's planned lr (`base_lr`), never by absolute values."""

from __future__ import annotations

from typing import Any


def scale_lrs(optimizer: Any, factor: float) -> None:
    """Set every group's lr to base_lr * factor (groups without `base_lr` record their current lr first)."""
    for group in optimizer.param_groups:
        if "base_lr" not in group:
            group["base_lr"] = group["lr"]
        lr = group["base_lr"] * factor
        # A tensor lr (capturable / fused optimizers) is updated in place so compiled steps see the change.
        if hasattr(group["lr"], "fill_"):
            group["lr"].fill_(lr)
        else:
            group["lr"] = lr
