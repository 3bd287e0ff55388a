"""The full compile of a rule: parse the chain, resolve, check, generate, and summarise what `check` and `show`
print. This is what a rule-cache miss runs (it loads sympy, lark and jinja2); `compiler/parameterisation.py` is the
entry point."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import sympy

from scalec.compiler.analysis import desiderata
from scalec.compiler.checks import CheckReport, run_checks
from scalec.compiler.codegen import generate
from scalec.compiler.exponents import exponent_table
from scalec.compiler.ir import ParameterisationIR, Quantity
from scalec.compiler.loader import load_chain
from scalec.compiler.region import region_lines
from scalec.compiler.resolve import resolve
from scalec.compiler.rule_cache import RuleSummary
from scalec.compiler.values import parse_int
from scalec.compiler.vocabulary import AXES
from scalec.dsl.errors import RuleError


def _apply_base(ir: ParameterisationIR, base: Mapping[str, float]) -> None:
    for axis, raw in base.items():
        if axis not in AXES:
            raise RuleError(
                ir.header_loc, f"unknown axis '{axis}' in base override", f"axes: {', '.join(AXES)}", ir.sources[-1]
            )
        q = ir.axes[axis]
        value = sympy.Integer(parse_int(raw, f"base {axis}"))
        if q.low is not None and not (q.low <= value <= q.high):
            raise RuleError(
                q.loc,
                f"base {axis}={raw} is outside the range [{q.low}, {q.high}] the file declares",
                "choose a base inside the range",
                ir.sources[ir.paths.index(q.loc.path)] if q.loc.path in ir.paths else None,
            )
        ir.axes[axis] = Quantity(axis, value, q.low, q.high, None, q.loc)


def compile_ir(
    name_or_path: str | Path, params: Mapping[str, str | float] | None = None, base: Mapping[str, float] | None = None
) -> tuple[ParameterisationIR, CheckReport]:
    """Parse, resolve and check; raises RuleError on the first problem."""
    ir = resolve(load_chain(name_or_path), params)
    if base:
        _apply_base(ir, base)
    return ir, run_checks(ir)


def summarise(ir: ParameterisationIR, report: CheckReport) -> RuleSummary:
    """The generated module and what `check` and `show` print, as data (the rule cache stores this)."""
    d = desiderata(ir)
    rows = tuple((r.subject, r.hp, tuple(r.symbolic.items())) for r in exponent_table(ir).rows)
    return RuleSummary(
        name=ir.name,
        lineage=tuple(ir.lineage),
        paths=tuple(ir.paths),
        source=generate(ir),
        warnings=tuple(report.warnings),
        region=tuple(region_lines(ir)),
        width_class=d.width_class,
        depth_class=d.depth_class,
        exponents=rows,
    )
