"""The values hyperparameters may take, in one place: each per-role target's domain (what the static checks prove
the rules keep, for every optimizer) and each tunable HP's (the CLI, `p.hparams` and `make_plan`)."""

from __future__ import annotations

import math
from typing import Any

# Domain of each per-role target after scaling: (low, high, low_open, high_open); ns_steps is also a whole number.
TARGET_DOMAINS: dict[str, tuple[float, float, bool, bool]] = {
    "lr": (0.0, math.inf, True, True),
    "eps": (0.0, math.inf, True, True),
    "init_std": (0.0, math.inf, False, True),
    "weight_decay": (0.0, math.inf, False, True),
    "beta1": (0.0, 1.0, False, True),
    "beta2": (0.0, 1.0, False, True),
    "momentum": (0.0, 1.0, False, True),
    "ns_steps": (1.0, math.inf, False, True),
}
WHOLE_TARGETS: frozenset[str] = frozenset({"ns_steps"})


def in_target_domain(kind: str, value: Any) -> bool:
    """Whether `value` (a number or a sympy number) lies in the domain of target `kind`."""
    low, high, low_open, high_open = TARGET_DOMAINS[kind]
    above = value > low if low_open else value >= low
    below = value < high if high_open else value <= high
    return bool(above and below) and (kind not in WHOLE_TARGETS or float(value).is_integer())


def describe_target_domain(kind: str) -> str:
    """`lr > 0`, `0 <= beta1 < 1`, `ns_steps a whole number >= 1`: the domain of target `kind` in words."""
    low, high, low_open, high_open = TARGET_DOMAINS[kind]
    if kind in WHOLE_TARGETS:
        return f"{kind} a whole number >= {_fmt(low)}"
    text = f"{kind} {'>' if low_open else '>='} {_fmt(low)}"
    if math.isfinite(high):
        text = f"{_fmt(low)} {'<' if low_open else '<='} {kind} {'<' if high_open else '<='} {_fmt(high)}"
    return text


def hp_domain(name: str, spec: Any) -> tuple[float, float, bool]:
    """(low, high, high_is_open) of HP `name`; low is open for log-scale HPs and per-module multipliers.  An HP
    named after a [0, 1) target (beta1, beta2, momentum; any beta*) takes that domain."""
    domain = getattr(spec, "domain", None)
    if domain is not None:
        return float(domain[0]), float(domain[1]), True
    base = name.split("[", 1)[0].rstrip("_")
    if base.startswith("beta") or base == "momentum":
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
