"""Plans: bind a model's parameters to roles and compute per-parameter init and optimizer settings."""

from scalec.runtime.plan.plan_data import Plan, PlanEntry, PlanError
from scalec.runtime.plan.planner import make_plan

__all__ = ["Plan", "PlanEntry", "PlanError", "make_plan"]
