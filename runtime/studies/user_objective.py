"""Your training loop in a study: `objective(model, optimizer, run) -> float` (the final loss, lower is better).

scalec builds the model with `build(width, depth)`, binds it to the rule's roles, initialises it, builds the optimizer
from the plan and hooks the forward multipliers the model does not apply, then calls the objective once per run.
`run` carries the run's `shape` (the rule's axes), `seed`, `steps`, `device`, `hp` and `report(step, loss)`, which
logs progress (metrics.jsonl in the run dir) and, in a search, lets the pruner stop an unpromising trial.

A NaN or infinite result is a diverged run (as in the bundled loop); an objective that raises or returns something
other than a number fails its run with one line naming the objective and the run.
"""

from __future__ import annotations

import contextlib
import json
import math
import numbers
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scalec.compiler.parameterisation import load
from scalec.runtime.studies.user_model import (
    UserModel,
    UserModelError,
    binding_record,
    check_unchanged,
    one_line,
    resolve,
)

OBJECTIVE_SIGNATURE = "(model, optimizer, run)"
# report(step, loss) -> True when the run should stop (a search's pruner); set by the search worker around a trial.
_pruner: list[Callable[[int, float], bool]] = []


class Pruned(Exception):  # noqa: N818 - it is a signal, as optuna.TrialPruned
    """Raised by `run.report` when the search's pruner stops this run; the objective lets it pass."""


@contextlib.contextmanager
def pruning(should_stop: Callable[[int, float], bool]) -> Iterator[None]:
    """While active, `run.report(step, loss)` asks `should_stop(step, loss)` and stops the run when it says so."""
    _pruner.append(should_stop)
    try:
        yield
    finally:
        _pruner.remove(should_stop)


@dataclass
class Run:
    """What the objective gets besides the model and optimizer."""

    shape: dict[str, float]
    seed: int
    steps: int | None
    device: Any
    hp: dict[str, float] = field(default_factory=dict)
    out_dir: Path | None = None
    reports: list[tuple[int, float]] = field(default_factory=list)

    def report(self, step: int, loss: float) -> None:
        """Record the loss at a step (progress, and pruning in a search: raises Pruned when the pruner stops it)."""
        value = float(loss)
        self.reports.append((int(step), value))
        if self.out_dir is not None:
            with open(self.out_dir / "metrics.jsonl", "a") as f:
                f.write(json.dumps({"step": int(step), "loss": value if math.isfinite(value) else None}) + "\n")
        if _pruner and _pruner[-1](int(step), value):
            raise Pruned(f"pruned at step {step} (loss {value:.4g})")


def _device(name: str | None) -> Any:
    import torch

    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _loss_value(value: Any, where: str) -> float:
    """The objective's result as a float, or one line saying what it returned."""
    if isinstance(value, bool) or value is None:
        raise UserModelError(f"error: {where} returned {value!r}, not a number (the final loss)")
    if hasattr(value, "item") and getattr(value, "numel", lambda: 1)() == 1:
        value = value.item()
    if not isinstance(value, numbers.Real):
        raise UserModelError(f"error: {where} returned {type(value).__name__}, not a number (the final loss)")
    return float(value)


def run_objective(config: Mapping[str, Any], out_dir: Path | None) -> dict[str, Any]:
    """Run one study config with the user's objective (the RunStore's run_fn for configs with `objective`);
    returns the run summary (status, final_val_loss = the objective's value, the binding)."""
    t0 = time.perf_counter()
    check_unchanged(config.get("model"), config.get("model_sha256"), "--model")
    check_unchanged(config.get("objective"), config.get("objective_sha256"), "--objective")
    build = resolve(config["model"], "--model", "(width, depth)")
    objective = resolve(config["objective"], "--objective", OBJECTIVE_SIGNATURE)
    rules = load(config["rule"], params=dict(config.get("params") or {}) or None, base=config.get("base") or None)
    width, depth, seed = int(config["width"]), int(config["depth"]), int(config.get("seed", 0))
    axes = {"B": float(config["batch"])} if config.get("batch") else {}
    if config.get("duration"):
        axes["D"] = float(config["duration"])
    elif config.get("steps") and config.get("batch"):
        axes["D"] = float(config["steps"]) * float(config["batch"])
    user = UserModel(build, config.get("roles") or None, label=config["model"].removeprefix("python:"))
    hp = dict(config.get("hp") or {}) or None
    model, plan, hooks = user.bind(rules, width, depth, seed, hp, config.get("head_dim"), axes)
    device = _device(config.get("device"))
    model.to(device)
    optimizer = plan.optimizer(model)
    binding = binding_record(plan, hooks.sites)
    steps = config.get("steps") or (int(config["duration"]) // int(config["batch"]) if "D" in axes else None)
    run = Run({**plan.axes}, seed, steps, device, dict(config.get("hp") or {}), out_dir)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "metrics.jsonl").unlink(missing_ok=True)  # a rerun starts the objective again from step 0
        (out_dir / "config.json").write_text(json.dumps(dict(config), indent=2, sort_keys=True) + "\n")
        (out_dir / "plan.json").write_text(json.dumps({**plan.to_dict(), "binding": binding}, indent=2) + "\n")
        (out_dir / "binding.json").write_text(json.dumps(binding, indent=2) + "\n")
    where = f"{config['objective'].removeprefix('python:')} at n={width}, L={depth}, seed={seed}"
    status = "finished"
    try:
        value = _loss_value(objective(model, optimizer, run), where)
    except Pruned:
        status, value = "pruned", run.reports[-1][1]
    except UserModelError:
        raise
    except Exception as exc:  # the user's loop: one line naming it and the run
        raise UserModelError(f"error: {where} raised {one_line(exc)}") from None
    finally:
        hooks.remove()
    pruned = status == "pruned"  # kept as finished at its last reported loss; the search marks the trial PRUNED
    status = "diverged" if not math.isfinite(value) else "finished"
    summary = {
        "status": status,
        "pruned": pruned,
        "final_val_loss": value if math.isfinite(value) else None,
        "final_train_loss": run.reports[-1][1] if run.reports else None,
        "steps": run.reports[-1][0] if run.reports else config.get("steps"),
        "reports": len(run.reports),
        "wall_s": time.perf_counter() - t0,
        "device": str(device),
        "binding": binding,
    }
    if out_dir is not None:
        (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
