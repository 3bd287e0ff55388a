"""scalec: a declarative scaling-rule compiler for neural-network parameterisations.

Public API: `load` a rule; `optimizer(model, rule, shape, hp)` plans, initialises and returns the optimizer of any
PyTorch model (its plan is `opt.scalec_plan`; `plan(...)` plans without them); `apply_multipliers(model, plan)`
hooks in the forward multipliers the model does not apply; `coord_check` checks a rule on your own model;
`sweep`, `search` and `transfer` tune a rule's HPs on the bundled GPT, on your model (`build=`) and with your own
training loop (`objective=`); `desiderata` and `equivalence` analyse rules. Names load their module on first use:
`import scalec` stays light.
"""

from __future__ import annotations

from scalec.errors import ScalecError
from scalec.lazy_module import lazy_face
from scalec.version import __version__

__all__ = [
    "ScalecError",
    "__version__",
    "load",
    "plan",
    "optimizer",
    "apply_multipliers",
    "MultiplierHandles",
    "HOOKABLE",
    "Plan",
    "PlanError",
    "BindingError",
    "desiderata",
    "equivalence",
    "coord_check",
    "sweep",
    "search",
    "transfer",
]

__getattr__, __dir__ = lazy_face(
    globals(),
    {
        # a rule, and your model in one line
        "load": "scalec.compiler.parameterisation",
        "plan": "scalec.api",
        "optimizer": "scalec.api",
        "apply_multipliers": "scalec.runtime.multipliers",
        "MultiplierHandles": "scalec.runtime.multipliers",
        "HOOKABLE": "scalec.runtime.multipliers",
        "Plan": "scalec.runtime",
        "PlanError": "scalec.runtime",
        "BindingError": "scalec.runtime",
        "desiderata": "scalec.compiler.analysis",
        "equivalence": "scalec.compiler.analysis",
        # studies of a rule: they import torch
        "coord_check": "scalec.study_api",
        "sweep": "scalec.study_api",
        "search": "scalec.study_api",
        "transfer": "scalec.study_api",
    },
)
