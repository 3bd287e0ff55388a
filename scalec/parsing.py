"""The CLI's value parsing: the core parsers (`scalec.compiler.values`, which compiler/ and runtime/ import) and
the `--hp` spec parsing that needs the HP grid (runtime/studies/hp_grid.py)."""

from __future__ import annotations

from scalec.compiler.values import (
    EXAMPLES,
    MAX_CHARS,
    MAX_EXPONENT,
    MAX_MAGNITUDE,
    MIN_MAGNITUDE,
    SHAPE_KEYS,
    SUFFIXES,
    ArgumentValueError,
    evaluate,
    parse_assignments,
    parse_base,
    parse_exact,
    parse_int,
    parse_ints,
    parse_number,
    parse_params,
    parse_shape,
    parse_sizes,
    split_assignments,
)
from scalec.runtime.studies.hp_grid import parse_hp_specs, resolve_specs

__all__ = [
    "ArgumentValueError",
    "EXAMPLES",
    "MAX_CHARS",
    "MAX_EXPONENT",
    "MAX_MAGNITUDE",
    "MIN_MAGNITUDE",
    "SHAPE_KEYS",
    "SUFFIXES",
    "evaluate",
    "parse_assignments",
    "parse_base",
    "parse_exact",
    "parse_hp_specs",
    "parse_hp_values",
    "parse_int",
    "parse_ints",
    "parse_number",
    "parse_params",
    "parse_shape",
    "parse_sizes",
    "split_assignments",
]


def parse_hp_values(specs: list, rules, command: str, what: str = "--hp") -> dict[str, float]:
    """One value per tunable HP from `parse_hp_specs` (`eta=2^-7`, `lr[mlp.down]=2`), names and domains checked
    against the rule as every command checks them; lists and ranges are for `sweep` and `search`."""
    out: dict[str, float] = {}
    for s in resolve_specs(specs, rules.module.HP_SPACE, rules.name):
        if s.is_range or len(s.values) != 1:
            raise ArgumentValueError(
                f"error: {what} '{s.text}': {command} takes one value per HP, e.g. {what} {s.name}=2^-7; "
                "use `scalec sweep` for grids"
            )
        out[s.name] = s.values[0]
    return out
