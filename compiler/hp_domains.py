"""The values a tunable hyperparameter may take: one definition for the CLI, `p.hparams` and `make_plan`."""

from __future__ import annotations

import math
from typing import Any


def hp_domain(name: str, spec: Any) -> tuple[float, float, bool]:
    """(low, high, high_is_open) of HP `name`; low is open for log-scale HPs and per-module multipliers."""
    domain = getattr(spec, "domain", None)
    if domain is not None:
        return float(domain[0]), float(domain[1]), True
    base = name.split("[", 1)[0].rstrip("_")
    if base.startswith("beta") or base == "momentum":  # [0, 1) targets (compiler/domain.py)
        return 0.0, 1.0, True
    if getattr(spec, "scale", "log") == "log" or "[" in name:
        return 0.0, math.inf, True
    if base in ("lambda", "weight_decay", "wd", "sigma", "eps"):
        return 0.0, math.inf, True
    return -math.inf, math.inf, True


def domain_violation(name: str, value: float, spec: Any) -> str | None:
    """Why `value` is outside the domain of HP `name` (`"eta must lie in (0, inf); got -1"`), or None."""
    low, high, high_open = hp_domain(name, spec)
    log = getattr(spec, "scale", "log") == "log" or "[" in name
    below = value <= low if log else value < low
    above = value >= high if high_open else value > high
    if not (below or above or math.isnan(value)):
        return None
    lo_br, hi_br = "(" if log else "[", ")" if high_open else "]"
    return f"{name} must lie in {lo_br}{_fmt(low)}, {_fmt(high)}{hi_br}; got {_fmt(value)}"


def _fmt(x: float) -> str:
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:g}"
