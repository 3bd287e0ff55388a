"""Runtime: bind model parameters to roles, plan init/optimizer settings, train the bundled GPT.

Light at import: names below load their module on first use.
"""

from __future__ import annotations

from scalec.lazy_module import lazy_face

__all__ = [
    "HOOKABLE",
    "BindingError",
    "MultiplierHandles",
    "MultiplierHookError",
    "Plan",
    "PlanEntry",
    "PlanError",
    "PlanOptimizer",
    "apply_multipliers",
    "bind",
    "make_plan",
    "scale_lrs",
]

__getattr__, __dir__ = lazy_face(
    globals(),
    {
        "make_plan": "scalec.runtime.plan.planner",
        "Plan": "scalec.runtime.plan.plan_data",
        "PlanEntry": "scalec.runtime.plan.plan_data",
        "PlanError": "scalec.runtime.plan.plan_error",
        "bind": "scalec.runtime.plan.binding",
        "BindingError": "scalec.runtime.plan.model_params",
        "scale_lrs": "scalec.runtime.plan.schedule",
        "PlanOptimizer": "scalec.runtime.plan.optimizer",
        "apply_multipliers": "scalec.runtime.multipliers",
        "MultiplierHandles": "scalec.runtime.multipliers",
        "MultiplierHookError": "scalec.runtime.plan.multiplier_hooks",
        "HOOKABLE": "scalec.runtime.multipliers",
    },
)
