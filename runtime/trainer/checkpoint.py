"""Atomic training checkpoints: model and optimizer state, RNG states, step and the run's running figures.

A checkpoint is written to a temporary file and moved into place with os.replace, so an interruption leaves
either the old or the new checkpoint. A checkpoint that cannot be read is reported in one line and never
deleted or overwritten.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from scalec.errors import ScalecError

CHECKPOINT = "checkpoint.pt"
FORMAT = 1


class CheckpointError(ScalecError):
    """A checkpoint cannot be read or does not belong to this run."""


def rng_state() -> dict[str, Any]:
    """Python, numpy, torch (and CUDA) RNG states."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state` captured."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, step: int, extra: dict[str, Any]
) -> None:
    """Write model/optimizer state, RNG states, `step` (the data position) and `extra` atomically to `path`."""
    state = {
        "format": FORMAT,
        "step": step,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "rng": rng_state(),
        "extra": extra,
    }
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint (on CPU); one-line CheckpointError if it is unreadable or of another format."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a corrupt file
        reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise CheckpointError(
            f"error: checkpoint {path} is unreadable ({reason}); move it away to start over, "
            "or pass --resume never with another --out"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT or "model" not in state:
        raise CheckpointError(
            f"error: {path} is not a scalec checkpoint (format {FORMAT}); move it away or pass another --out"
        )
    return state


def restore(state: dict[str, Any], model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> int:
    """Load a checkpoint's model, optimizer and RNG states; return its step."""
    try:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
    except (RuntimeError, ValueError, KeyError) as exc:
        raise CheckpointError(
            f"error: checkpoint does not fit this model/optimizer ({str(exc).splitlines()[0][:120]}); use another --out"
        ) from None
    set_rng_state(state["rng"])
    return int(state["step"])
