"""Sweep specs: parse `--hp eta=2^-12..2^-4:7`, check them against a rule's HP_SPACE, expand grids.

Spec forms (values are numbers as `scalec.compiler.values` reads them: `2^-7`, `1e-3`, `1/3`): `name=v` (fixed),
`name=v1,v2,...` (list), `name=lo..hi:K` (K <= MAX_GRID points, log-spaced for log-scale HPs, `:K:lin` / `:K:log`
to force), `name=lo..hi` (a range: for random search and search bounds). `lr` and `wd` are aliases of the globals
`eta` and `lambda` when the rule has no HP of that name.
"""

from __future__ import annotations

import difflib
import itertools
import math
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from scalec.compiler.module_inputs import domain_violation
from scalec.compiler.values import evaluate, split_assignments
from scalec.errors import ScalecError

ALIASES = {"lr": "eta", "wd": "lambda", "weight_decay": "lambda"}
MAX_GRID = 10_000  # points in one `lo..hi:K` grid and in a sweep's whole cartesian product


class HPSpecError(ScalecError):
    """A `--hp` spec that cannot be parsed, names no HP of the rule, or leaves the HP's domain."""


@dataclass(frozen=True)
class HPRange:
    """One parsed `--hp` spec: explicit `values`, or a `low..high` range with an optional grid `count`."""

    name: str
    text: str
    values: tuple[float, ...] = ()
    low: float | None = None
    high: float | None = None
    count: int | None = None
    scale: str | None = None  # "log" | "linear" | None (take the HP's own scale)

    @property
    def is_range(self) -> bool:
        """True for `lo..hi` specs."""
        return self.low is not None

    def grid(self, scale: str = "log") -> tuple[float, ...]:
        """The grid values; a range needs a count (`lo..hi:K`)."""
        if not self.is_range:
            return self.values
        if self.count is None:
            raise HPSpecError(
                f"error: --hp '{self.text}': a grid needs a point count, e.g. "
                f"'{self.name}={self.text.split('=', 1)[1]}:5' (or use --random N)"
            )
        return spaced(self.low, self.high, self.count, self.scale or scale)

    def sample(self, rng: random.Random, scale: str = "log") -> float:
        """One random value: uniform in log or linear space over a range, a uniform pick from a list."""
        if not self.is_range:
            return rng.choice(self.values)
        if (self.scale or scale) == "log":
            return math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
        return rng.uniform(self.low, self.high)

    def bounds(self) -> tuple[float, float]:
        """Smallest and largest value the spec can produce."""
        if self.is_range:
            return self.low, self.high
        return min(self.values), max(self.values)


def spaced(low: float, high: float, count: int, scale: str = "log") -> tuple[float, ...]:
    """`count` points from low to high inclusive, evenly spaced in log or linear space."""
    if count == 1:
        return (low,)
    if scale == "log":
        a, b = math.log2(low), math.log2(high)
        return tuple(2.0 ** (a + (b - a) * i / (count - 1)) for i in range(count))
    return tuple(low + (high - low) * i / (count - 1) for i in range(count))


def _value(text: str) -> float:
    try:
        return float(evaluate(text))
    except ValueError as exc:
        raise ValueError(f"{text.strip()!r} {exc}") from None


def parse_hp_spec(text: str) -> HPRange:
    """Parse one `--hp NAME=VALUES` spec (see the module docstring for the forms)."""
    if "=" not in text:
        raise HPSpecError(f"error: --hp '{text}': expected NAME=VALUES, e.g. eta=2^-10..2^-4:7")
    name, rhs = (s.strip() for s in text.split("=", 1))
    if not name or not rhs:
        raise HPSpecError(f"error: --hp '{text}': expected NAME=VALUES, e.g. eta=2^-10..2^-4:7")
    try:
        if ".." in rhs:
            rng, _, tail = rhs.partition(":")
            lo_text, _, hi_text = rng.partition("..")
            low, high = _value(lo_text), _value(hi_text)
            count = scale = None
            for part in (p.strip() for p in tail.split(":") if tail):
                if part in ("log", "lin", "linear"):
                    scale = "log" if part == "log" else "linear"
                elif part.isdigit() and 1 <= int(part) <= MAX_GRID:
                    count = int(part)
                elif part.isdigit():
                    raise ValueError(f"a grid of {part} points is beyond the bound of {MAX_GRID}")
                else:
                    raise ValueError(f"bad grid suffix {part!r}; use :K, :K:log or :K:lin")
            if low > high:
                low, high = high, low
            if scale == "log" and low <= 0:
                raise ValueError("a log-spaced range needs positive ends")
            return HPRange(name, text, low=low, high=high, count=count, scale=scale)
        items = [v.strip() for v in rhs.split(",")]
        if "" in items and len(items) > 1:
            raise ValueError("an empty item between commas; remove the extra comma")
        values = tuple(_value(v) for v in items if v)
        if not values:
            raise ValueError("no values")
        return HPRange(name, text, values=values)
    except ValueError as exc:
        raise HPSpecError(f"error: --hp '{text}': {exc}") from None


def resolve_name(name: str, hp_space: Mapping[str, Any], rule_name: str = "the rule") -> str:
    """The HP_SPACE key a user-given name refers to (aliases `lr`, `wd`); error with suggestions otherwise."""
    if name in hp_space:
        return name
    stripped = name.rstrip("_")
    if stripped in hp_space:
        return stripped
    alias = ALIASES.get(name)
    if alias is not None and alias in hp_space:
        return alias
    close = difflib.get_close_matches(name, list(hp_space), n=3)
    globals_ = sorted(k for k in hp_space if "[" not in k)
    kinds = sorted({k.split("[", 1)[0] for k in hp_space if "[" in k})
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise HPSpecError(
        f"error: --hp '{name}': no tunable HP of that name in {rule_name}; {hint}"
        f"globals: {', '.join(globals_)}; per-module: {', '.join(k + '[<role>]' for k in kinds)}"
    )


def check_value(name: str, value: float, spec: Any, text: str) -> None:
    """Raise HPSpecError when `value` leaves the domain of HP `name` (compiler/hp_domains.py)."""
    reason = domain_violation(name, value, spec)
    if reason is not None:
        raise HPSpecError(f"error: --hp '{text}': {reason}")


def resolve_specs(specs: Sequence[HPRange], hp_space: Mapping[str, Any], rule_name: str = "the rule") -> list[HPRange]:
    """Map names onto HP_SPACE keys and check every value against the HP's domain; duplicates are an error."""
    out: list[HPRange] = []
    seen: set[str] = set()
    for spec in specs:
        name = resolve_name(spec.name, hp_space, rule_name)
        if name in seen:
            raise HPSpecError(f"error: --hp '{spec.text}': {name} is given twice; merge the values into one --hp")
        seen.add(name)
        for v in (spec.low, spec.high) if spec.is_range else spec.values:
            check_value(name, v, hp_space[name], spec.text)
        scale = spec.scale or getattr(hp_space[name], "scale", "log")
        if scale == "log" and spec.is_range and spec.low <= 0:
            raise HPSpecError(f"error: --hp '{spec.text}': {name} is searched in log space; give positive ends")
        out.append(HPRange(name, spec.text, spec.values, spec.low, spec.high, spec.count, scale))
    return out


def grid_points(specs: Sequence[HPRange]) -> list[dict[str, float]]:
    """The cartesian product of the specs' grids, as `{name: value}` dicts (one empty dict if no specs)."""
    grids = [spec.grid() for spec in specs]
    if math.prod(len(g) for g in grids) > MAX_GRID:
        raise HPSpecError(
            f"error: --hp: the grid has {math.prod(len(g) for g in grids)} points, beyond the bound of {MAX_GRID}; "
            "use fewer points or --random N"
        )
    return [dict(zip([s.name for s in specs], combo, strict=True)) for combo in itertools.product(*grids)]


def random_points(specs: Sequence[HPRange], count: int, seed: int = 0) -> list[dict[str, float]]:
    """`count` random configurations: ranges sampled uniformly in their scale, lists picked uniformly."""
    if count > MAX_GRID:
        raise HPSpecError(f"error: --random {count}: beyond the bound of {MAX_GRID} points; use fewer")
    rng = random.Random(seed)
    return [{s.name: s.sample(rng) for s in specs} for _ in range(count)]


def parse_hp_specs(items: Iterable[str] | None, what: str = "--hp") -> list:
    """`--hp` items as hp_grid specs (values, lists, `lo..hi:K` ranges), every number checked; no rule needed,
    so a bad number is refused before the rule is compiled."""
    return [parse_hp_spec(f"{name}={value}") for name, value in split_assignments(items, what)]
