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
from scalec.compiler.expectations import LEVELS
from scalec.compiler.exponents import exponent_table
from scalec.compiler.hp_domains import derive_hp_domains
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
    """Parse, resolve and check (the HP domains too: one an HP cannot satisfy is an error); raises RuleError on the
    first problem."""
    ir = resolve(load_chain(name_or_path), params)
    if base:
        _apply_base(ir, base)
    report = run_checks(ir)
    derive_hp_domains(ir)
    return ir, report


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
        check_lines=tuple(check_lines(report)),
        declared_lines=tuple(declared_role_lines(ir)),
        broken=bool(report.broken),
    )


def check_lines(report: CheckReport) -> list[str]:
    """What `scalec check` prints under a file's header: the expectations that hold, one line per broken
    condition, and every failed desideratum the expectations do not already cover."""
    lines = []
    held = [f"{e.area}: {e.level}" for e in report.expectations if e.holds]
    if held:
        lines.append(f"expect {', '.join(held)}: holds")
    for e in report.broken:
        for line in e.broken:
            lines.append(f"broken: {e.where}: expect {e.area}: {e.level}: {line}")
    covered = {a for e in report.broken for a in LEVELS[e.area][e.level].areas}
    lines += [f"fails: {line}" for line in report.failures if line.split(" / ", 1)[0] not in covered]
    return lines


def declared_role_lines(ir: ParameterisationIR) -> list[str]:
    """Where each rule of a declared role (`new role NAME: KIND [in blocks]`) came from, one line per target."""
    lines = []
    for role, info in ir.role_table.items():
        if info.declared is None:
            continue
        place = ", in blocks" if info.in_blocks else ""
        lines.append(f"new role {role} ({info.kind}{place}; {info.declared.path}:{info.declared.line}):")
        derived = dict(info.derivation)
        for kind, rule in ir.roles[role].items():
            chain = [f"{o.short()} {o.text}" + (f" ({derived[kind]})" if o.line == info.declared.line and
                     o.path == info.declared.path and kind in derived else "") for o in rule.origins]  # fmt: skip
            lines.append(f"  {kind}: {'; '.join(chain) or 'default'}")
    return lines
