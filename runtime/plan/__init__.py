"""Plans: bind a model's parameters to roles and compute per-parameter init and optimizer settings."""

from scalec.runtime.plan.planner import Plan, PlanEntry, PlanError, make_plan

__all__ = ["Plan", "PlanEntry", "PlanError", "make_plan"]
