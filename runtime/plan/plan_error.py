"""The planner's one error class (the optimizer builder and the binding checks raise it too)."""

from __future__ import annotations

from scalec.errors import ScalecError


class PlanError(ScalecError):
    """A plan cannot be made (bad shape or HP) or does not fit the model it is applied to."""
