"""Runtime: bind model parameters to roles, plan init/optimizer settings, train the bundled GPT.

Light at import: names below load their module on first use.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "make_plan": "scalec.runtime.plan.planner",
    "Plan": "scalec.runtime.plan.plan_data",
    "PlanEntry": "scalec.runtime.plan.plan_data",
    "PlanError": "scalec.runtime.plan.plan_data",
    "bind": "scalec.runtime.plan.binding",
    "BindingError": "scalec.runtime.plan.binding",
    "scale_lrs": "scalec.runtime.plan.schedule",
    "PlanOptimizer": "scalec.runtime.plan.optimizer",
    "apply_multipliers": "scalec.runtime.multipliers",
    "MultiplierHandles": "scalec.runtime.multipliers",
    "MultiplierHookError": "scalec.runtime.plan.multiplier_hooks",
    "HOOKABLE": "scalec.runtime.multipliers",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'scalec.runtime' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
