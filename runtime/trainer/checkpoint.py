"""Atomic training checkpoints: model and optimizer state, RNG states, step and the run's running figures.

A checkpoint is plain data (tensors, numbers, strings, lists and dicts) read back with `weights_only=True`, so a
crafted file cannot run code: it is refused in one line. It is written to a temporary file and moved into place
with os.replace after an fsync (`atomic_io`), so an interruption or a full disk leaves either the old or the new
checkpoint, and a failed write is one line naming the file and the space it needs. A checkpoint that cannot be read
or does not fit the run is reported in one line and never deleted or overwritten.
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from scalec.errors import ScalecError
from scalec.runtime.atomic_io import write_bytes_atomic

CHECKPOINT = "checkpoint.pt"
FORMAT = 2  # 2: RNG states as tensors (weights_only); 1 held pickled numpy objects
EXTRA_KEYS = ("best_val", "last_val", "wall_s")  # the run's running figures, all numbers (None before a value)


class CheckpointError(ScalecError):
    """A checkpoint cannot be read or does not belong to this run."""


@dataclass
class Checkpoint:
    """What a checkpoint holds, validated: `step` optimizer steps done, states, and the running figures."""

    step: int
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    rng: dict[str, Any]
    extra: dict[str, float | None]


def rng_state() -> dict[str, Any]:
    """Python, numpy, torch (and CUDA) RNG states as tensors and numbers."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": {"version": version, "internal": torch.tensor(internal, dtype=torch.int64), "gauss": gauss},
        "numpy": {
            "name": name,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state` captured."""
    py, npy = state["python"], state["numpy"]
    random.setstate((py["version"], tuple(py["internal"].tolist()), py["gauss"]))
    keys = npy["keys"].numpy().astype(np.uint32)
    np.random.set_state((npy["name"], keys, npy["pos"], npy["has_gauss"], npy["cached"]))
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
        "extra": {k: extra.get(k) for k in EXTRA_KEYS},
    }
    buffer = io.BytesIO()  # serialised in memory first: its size is known and a full disk is a plain OSError
    torch.save(state, buffer)
    write_bytes_atomic(
        path,
        buffer.getbuffer(),
        fix="free some space and run the same command again: it resumes from the last checkpoint",
    )


def _is_number(value: Any, allow_none: bool = False) -> bool:
    return (value is None and allow_none) or (isinstance(value, (int, float)) and not isinstance(value, bool))


def _problem(state: Any, total_steps: int) -> str | None:
    """What is wrong with a loaded checkpoint, in a few words; None when it fits the schema."""
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        return f"not a scalec checkpoint of format {FORMAT}"
    missing = [k for k in ("step", "model", "optimizer", "rng", "extra") if k not in state]
    if missing:
        return f"missing {', '.join(missing)}"
    step = state["step"]
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        return f"step {step!r} is not a step count"
    if step > total_steps:
        return f"it is at step {step}, past this run's {total_steps} steps"
    model = state["model"]
    if not isinstance(model, dict) or not all(isinstance(v, torch.Tensor) for v in model.values()):
        return "model state is not a dict of tensors"
    if not isinstance(state["optimizer"], dict) or not {"state", "param_groups"} <= set(state["optimizer"]):
        return "optimizer state is not an optimizer state_dict"
    extra = state["extra"]
    if not isinstance(extra, dict) or any(k not in extra for k in EXTRA_KEYS):
        return f"extra lacks one of {', '.join(EXTRA_KEYS)}"
    if not all(_is_number(extra[k], allow_none=k != "wall_s") for k in EXTRA_KEYS):
        return "extra holds a value that is not a number"
    rng = state["rng"]
    try:
        ok = (
            isinstance(rng["torch"], torch.Tensor)
            and isinstance(rng["python"]["internal"], torch.Tensor)
            and isinstance(rng["numpy"]["keys"], torch.Tensor)
            and _is_number(rng["numpy"]["pos"])
        )
    except (KeyError, TypeError):
        ok = False
    return None if ok else "rng states are missing or malformed"


def load_checkpoint(path: Path, total_steps: int) -> Checkpoint:
    """Read a checkpoint (on CPU, plain data only) of a run of `total_steps` steps; one-line CheckpointError if it
    is unreadable, crafted, of another format or does not fit the run."""
    fix = "move it away to start over, or pass another --out"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a corrupt or crafted file
        text = str(exc)
        if "weights_only" in text or "Unsupported global" in text:
            reason = "it holds Python objects beyond plain data, which scalec never unpickles"
        else:
            reason = text.splitlines()[0][:120] if text else type(exc).__name__
        raise CheckpointError(f"error: checkpoint {path} is unreadable ({reason}); {fix}") from None
    problem = _problem(state, total_steps)
    if problem is not None:
        raise CheckpointError(f"error: checkpoint {path} does not fit this run ({problem}); {fix}")
    return Checkpoint(state["step"], state["model"], state["optimizer"], state["rng"], dict(state["extra"]))


def restore(ckpt: Checkpoint, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> int:
    """Load a checkpoint's model, optimizer and RNG states; return its step."""
    try:
        model.load_state_dict(ckpt.model)
        optimizer.load_state_dict(ckpt.optimizer)
        set_rng_state(ckpt.rng)
    except (RuntimeError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(
            f"error: checkpoint does not fit this model/optimizer ({str(exc).splitlines()[0][:120]}); use another --out"
        ) from None
    return ckpt.step
