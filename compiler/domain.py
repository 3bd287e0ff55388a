"""The domain of every hyperparameter kind: the one definition the checker, the compiled region and the runtime share.

Pure Python (no sympy), so the runtime can import it cheaply.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Domain:
    """`low (<|<=) value (<|<=) high`, finite; `nonzero` excludes 0 (multipliers). None = unbounded."""

    kind: str
    low: float | None = None
    low_strict: bool = False
    high: float | None = None
    high_strict: bool = False
    nonzero: bool = False
    whole: bool = False  # a whole number (ns_steps)

    def holds(self, value: float) -> bool:
        """Does `value` lie in the domain (finite, within the bounds, non-zero when asked)?"""
        if isinstance(value, complex) or not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.low_strict else value < self.low):
            return False
        if self.high is not None and (value >= self.high if self.high_strict else value > self.high):
            return False
        if self.whole and not float(value).is_integer():
            return False
        return not (self.nonzero and value == 0)

    @property
    def text(self) -> str:
        """The domain as a user reads it: `lr > 0`, `0 <= beta1 < 1`, `mult != 0`."""
        k = f"{self.kind} a whole number" if self.whole else self.kind
        if self.low is not None and self.high is not None:
            lo, hi = ("<" if self.low_strict else "<="), ("<" if self.high_strict else "<=")
            return f"{_num(self.low)} {lo} {k} {hi} {_num(self.high)}"
        if self.low is not None:
            return f"{k} {'>' if self.low_strict else '>='} {_num(self.low)}"
        if self.high is not None:
            return f"{k} {'<' if self.high_strict else '<='} {_num(self.high)}"
        return f"{k} != 0 and finite" if self.nonzero else f"{k} finite"


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(v)


# Every per-role HP kind (of every optimizer, compiler/optimizers.py) and forward site: what values make sense.
DOMAINS: dict[str, Domain] = {
    "init_mean": Domain("init_mean"),
    "init_std": Domain("init_std", low=0),
    "lr": Domain("lr", low=0, low_strict=True),
    "weight_decay": Domain("weight_decay", low=0),
    "beta1": Domain("beta1", low=0, high=1, high_strict=True),
    "beta2": Domain("beta2", low=0, high=1, high_strict=True),
    "eps": Domain("eps", low=0, low_strict=True),
    "momentum": Domain("momentum", low=0, high=1, high_strict=True),
    "ns_steps": Domain("ns_steps", low=1, whole=True),
    "mult": Domain("mult", nonzero=True),
}
SITE_DOMAIN = Domain("site", nonzero=True)


def domain_of(kind: str) -> Domain:
    """The domain of a role HP kind (`lr`, `beta1`, ...); forward sites take SITE_DOMAIN."""
    return DOMAINS.get(kind, SITE_DOMAIN)


FLOAT32_MAX = 3.4028234663852886e38  # torch's optimizers hold every HP as a float32


def first_violation(values: object) -> tuple[str, float, str] | None:
    """The first numeric field of a role's values (a RoleHParams) outside its domain or beyond float32, as
    (field, value, why: `outside lr > 0` / `beyond float32`); None when all hold. Word and absent settings skip."""
    for f in dataclasses.fields(values):  # type: ignore[arg-type]
        value = getattr(values, f.name)
        if value is None or isinstance(value, (str, bool)):
            continue  # a target the role's optimizer does not have, or a word-valued setting
        domain = domain_of(f.name)
        if not domain.holds(value):
            return f.name, value, f"outside {domain.text}"
        if abs(value) > FLOAT32_MAX:
            return f.name, value, "beyond float32"
    return None
