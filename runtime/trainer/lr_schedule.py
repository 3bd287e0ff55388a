"""Learning-rate schedules as a factor of each group's planned lr: linear warmup, then cosine/linear/constant."""

from __future__ import annotations

import math

DECAYS = ("cosine", "linear", "constant")


def warmup_steps(total: int, warmup: float) -> int:
    """Warmup length in steps: `warmup` is a fraction of the run when < 1, a step count otherwise."""
    return round(warmup * total) if 0 <= warmup < 1 else int(warmup)


def lr_factor(step: int, total: int, warmup: float = 0.05, decay: str = "cosine", min_factor: float = 0.1) -> float:
    """Factor for the update at `step` (0-based) of a `total`-step run; in (0, 1], reaching `min_factor` at the end."""
    if decay not in DECAYS:
        raise ValueError(f"unknown lr decay {decay!r}; expected one of {DECAYS}")
    w = warmup_steps(total, warmup)
    if step < w:
        return (step + 1) / w
    if decay == "constant" or total <= w + 1:
        return 1.0
    progress = min(1.0, (step - w) / (total - w - 1))
    shape = 0.5 * (1.0 + math.cos(math.pi * progress)) if decay == "cosine" else 1.0 - progress
    return min_factor + (1.0 - min_factor) * shape
