"""`expect AREA: LEVEL`: what a rule file states it satisfies, judged against the desiderata (compiler/analysis.py).

A file writes e.g. `expect width: mup_like; depth: complete; batch: sde`; children inherit their parents'
expectations and may restate an area (the child's level replaces the parent's).  `scalec check` exits 1 with one
line per broken condition, naming the role, target, exponent and bound and the condition's source.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from scalec.compiler.analysis import Desiderata, Verdict
from scalec.compiler.ir import ParameterisationIR
from scalec.compiler.vocabulary import compress_roles


@dataclass(frozen=True)
class Level:
    """One level of an area: the desiderata areas it judges, whether verdicts must pass exactly (maximal) or only
    be stable, and what it means (for the grammar header, README and error hints)."""

    areas: tuple[str, ...]
    exact: bool
    doc: str
    alpha: Fraction | None = None  # depth: complete needs alpha = 1


LEVELS: dict[str, dict[str, Level]] = {
    "width": {
        "mup_like": Level(
            ("width", "weight_decay"),
            True,
            "stable and maximal: TP IV Thm 3.3 stability with r = 0 (feature learning, Thm 3.8), maximal updates per "
            "role's optimizer (TP V Table 3; spectral condition for Muon), the readout at a+b = 1 (or zero init), "
            "coupled lr*wd width-free",
        ),
        "stable": Level(("width",), False, "TP IV Thm 3.3 stability only (lazy NTK-like updates allowed)"),
    },
    "depth": {
        "complete": Level(
            ("depth",), True, "CompleteP: residual m_L^-1, in-block lr m_L^0, in-block eps m_L^-1", Fraction(1)
        ),
        "maximal": Level(
            ("depth",),
            True,
            "CompleteP's desiderata at the file's alpha in [1/2, 1]: in-block lr m_L^(alpha-1), eps m_L^-alpha",
        ),
        "stable": Level(("depth",), False, "residual m_L^-alpha, 1/2 <= alpha <= 1; in-block lr at most m_L^(alpha-1)"),
    },
    "batch": {
        "sde": Level(("batch",), True, "Complete(d)P / Malladi square-root rule: lr m_B^1/2, eps m_B^-1/2, 1-beta m_B")
    },
    "duration": {
        "sde": Level(("duration",), True, "Complete(d)P: AdamW timescale B/(lr*wd*D) fixed, beta2 half-life fixed")
    },
    "eps": {
        "tracks_gradient": Level(("eps",), True, "each role's eps scales like its gradient (Complete(d)P Eq. 40)"),
        "bounded": Level(
            ("eps",),
            False,
            "each role's eps outgrows its gradient in width by at most m_N^1 (the mup package's constant eps)",
        ),
    },
}


@dataclass(frozen=True)
class ExpectationResult:
    """One `expect AREA: LEVEL` judged: plain data (cached with check's results)."""

    area: str
    level: str
    where: str  # "path:line" of the declaration
    holds: bool
    broken: tuple[str, ...]  # one line per broken condition


def _conditions(bad: list[Verdict]) -> list[str]:
    """'role unembed, init_std: a+b+r = 1/2, needs >= 1 [TP IV Thm 3.3 + 3.8 (r = 0)]', roles that break the same
    condition the same way merged ('roles attn.*, mlp.* ...')."""
    groups: dict[str, list[str]] = {}
    for v in bad:
        if v.passed is None:
            rest = f"cannot tell ({v.message})"
        else:
            measured = f"{v.exponent}, needs {v.bound}" if v.exponent and v.bound else v.message
            rest = measured + (f" [{v.source}]" if v.source else "")
        key = f"{v.target}: {rest}" if v.target else f"{v.name}: {rest}"
        groups.setdefault(key, []).append(v.role)
    lines = []
    for key, roles in groups.items():
        named = [r for r in roles if r]
        who = f"role{'s' if len(named) > 1 else ''} {compress_roles(named)}, " if named else ""
        who = who or ("" if key.startswith("site") else "all roles, ")  # a file-level verdict
        lines.append(who + key)
    return lines


def judge(ir: ParameterisationIR, d: Desiderata) -> list[ExpectationResult]:
    """Every expectation of `ir` against its desiderata, root file's first, each file's in declaration order."""
    out = []
    rank = {path: i for i, path in enumerate(ir.paths)}
    order = sorted(ir.expectations.values(), key=lambda e: (rank.get(e.loc.path, len(rank)), e.loc.line, e.loc.col))
    for exp in order:
        level = LEVELS[exp.area][exp.level]
        judged = [v for v in d.verdicts if v.area in level.areas]
        bad = [v for v in judged if v.passed is None or (v.passed is False if level.exact else v.is_stable is False)]
        broken = _conditions(bad)
        if level.alpha is not None and d.alpha is not None and d.alpha != level.alpha:
            broken.insert(0, f"site residual: alpha = {d.alpha}, needs {level.alpha} [CompleteP, arXiv 2505.01618]")
        if not judged:
            broken.append(
                f"no {exp.area} condition applies to this file (eps is judged for muP-like files, batch and duration "
                "for AdamW roles)"
            )
        where = f"{exp.loc.path.rsplit('/', 1)[-1]}:{exp.loc.line}"
        out.append(ExpectationResult(exp.area, exp.level, where, not broken, tuple(dict.fromkeys(broken))))
    return out
