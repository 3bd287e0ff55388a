"""scalec: a declarative scaling-rule compiler for neural-network parameterisations.

Public API: `load` a rule; `optimizer(model, rule, shape, hp)` plans, initialises and returns the optimizer of any
PyTorch model (its plan is `opt.scalec_plan`; `plan(...)` plans without them); `apply_multipliers(model, plan)`
hooks in the forward multipliers the model does not apply; `coord_check` checks a rule on your own model;
`sweep`, `search` and `transfer` tune a rule's HPs on the bundled GPT, on your model (`build=`) and with your own
training loop (`objective=`); `desiderata` and `equivalence` analyse rules. Names load their module on first use:
`import scalec` stays light.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from scalec.errors import ScalecError
from scalec.version import __version__

# A rule, and your model in one line (compiler/parameterisation.py, scalec/api.py, runtime/multipliers.py).
_API_EXPORTS = {
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
}
# Studies of a rule (scalec/study_api.py): they import torch.
_STUDY_EXPORTS = dict.fromkeys(("coord_check", "sweep", "search", "transfer"), "scalec.study_api")
_EXPORTS = {**_API_EXPORTS, **_STUDY_EXPORTS}

__all__ = ["ScalecError", "__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'scalec' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
