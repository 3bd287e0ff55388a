"""What `compare` shows, as data: each file's exponent table, desiderata verdicts, base shape and citations,
the pairwise equivalences, the side-by-side grids (one row per check) and the "which parameterisation for which
scaling" summary. Rendering lives in report_markdown.py and report_html.py."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from scalec.compiler import analysis
from scalec.compiler.analysis import desiderata, equivalence
from scalec.compiler.exponents import exponent_table, fmt_fraction
from scalec.compiler.parameterisation import load
from scalec.compiler.vocabulary import ROLES, compress_roles
from scalec.runtime.studies.coord_check import CoordCheckConfig, CoordCheckResult

AXIS_LABELS: dict[str, str] = {"n": "m_N", "L": "m_L", "B": "m_B", "D": "m_D"}
ALL_ROLES: tuple[str, ...] = tuple(ROLES)
MAIN_AXES: tuple[str, ...] = ("n", "L", "B", "D")
EXPONENT_LEGEND = (
    "Each cell is the factor multiplying the base value (m_N = n/n0, m_L = L/L0, m_B = B/B0, m_D = D/D0); "
    "'1' = unscaled, '-' = no such row in that file; rows unscaled in every file are left out."
)


# The same check under the name a file-level verdict carries and the name its per-role verdicts carry: a file
# with no batch rule gets one 'square-root rule' verdict, a file with one gets '<role> sqrt rule' per role.
CHECK_ALIASES: dict[tuple[str, str], str] = {
    ("batch", "square-root rule"): "sqrt rule",
    ("duration", "tau invariant"): "tau",
}

# Scaling axes the summary recommends for, and the desiderata areas that must hold for each.
SCALING_AREAS: dict[str, tuple[str, ...]] = {
    "width": ("width",),
    "depth": ("depth",),
    "batch": ("batch",),
    "duration": ("duration",),
}


@dataclass
class RuleSection:
    """One compared file: its analysis (scalec.compiler.analysis objects) and optional coordinate check."""

    label: str  # what the user typed (rule name or path)
    name: str  # the parameterisation's NAME
    exponents: Any  # ExponentTable
    desiderata: Any  # Desiderata
    coord: CoordCheckResult | None = None
    plots: dict[str, Path] = field(default_factory=dict)  # sweep -> PNG path
    rules: Any = None  # the loaded Parameterisation

    @property
    def base_shape(self) -> str:
        """The file's base shape, e.g. 'n=128, L=2, B=4096, D=2^22, d_head=32' ('-' when unknown)."""
        return format_shape(getattr(getattr(self.rules, "module", None), "BASE", None))

    @property
    def citations(self) -> list[str]:
        """The file's citations (its own and inherited ones), as the compiled module lists them."""
        return list(getattr(getattr(self.rules, "module", None), "CITATIONS", ()) or ())


@dataclass
class Comparison:
    """Everything the report shows: the sections and the pairwise (label_a, label_b, Equivalence)."""

    sections: list[RuleSection]
    equivalences: list[tuple[str, str, Any]]
    command: str = ""


def format_shape(shape: Any) -> str:
    """'n=128, L=2, B=4096, D=2^22, d_head=32' from a Shape (namedtuple, dataclass or mapping)."""
    if shape is None:
        return "-"
    if hasattr(shape, "_asdict"):
        items = shape._asdict()
    elif dataclasses.is_dataclass(shape):
        items = dataclasses.asdict(shape)
    elif isinstance(shape, Mapping):
        items = dict(shape)
    else:
        return str(shape)
    return ", ".join(f"{k}={_size(v)}" for k, v in items.items() if v is not None)


def _size(x: Any) -> str:
    """Integers as written; powers of two of 2^16 and more as 2^k."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return str(x)
    if v.is_integer() and v >= 2**16 and math.log2(v).is_integer():
        return f"2^{int(math.log2(v))}"
    return f"{int(v)}" if v.is_integer() else f"{v:g}"


def format_exponents(exponents: Mapping[str, Fraction | None]) -> str:
    """Exponents as the monomial they stand for: 'm_N^-1 m_B^1/2 m_D^-1/2'; '1' when nothing scales, 'n/a' when
    an axis is not a power law. Axes outside (n, L, B, D), e.g. d_head of the attention scale, come last."""
    if any(e is None for e in exponents.values()):
        return "n/a"
    axes = [a for a in MAIN_AXES if a in exponents] + [a for a in exponents if a not in MAIN_AXES]
    parts = [f"{AXIS_LABELS.get(a, a)}^{fmt_fraction(Fraction(exponents[a]))}" for a in axes if exponents[a] != 0]
    return " ".join(parts) or "1"


def _split_role(name: str) -> tuple[str | None, str]:
    """'attn.q lr*wd' -> ('attn.q', 'lr*wd'); names that do not start with a role -> (None, name)."""
    head, _, rest = name.partition(" ")
    return (head, rest) if head in ALL_ROLES and rest else (None, name)


def exponent_grid(sections: Sequence[RuleSection]) -> list[tuple[str, str, list[str], bool]]:
    """Rows (subjects, hp, one cell per section, differs) over every section's rows in first-seen order; rows
    that scale with nothing in every file are left out, and subjects with identical cells in every file share
    a row ('hidden', 'attn.*', ...); '-' = the file has no such row."""
    order: list[tuple[str, str]] = []
    cells: list[dict[tuple[str, str], str]] = []
    for s in sections:
        table = {}
        for row in s.exponents.rows:
            key = (row.subject, row.hp)
            table[key] = format_exponents(row.exponents)
            if key not in order:
                order.append(key)
        cells.append(table)
    groups: dict[tuple[str, tuple[str, ...]], list[str]] = {}
    for subject, hp in order:
        values = tuple(c.get((subject, hp), "-") for c in cells)
        if all(v in ("1", "-") for v in values):
            continue
        groups.setdefault((hp, values), []).append(subject)
    return [
        (compress_roles(subjects), hp, list(values), len(set(values)) > 1) for (hp, values), subjects in groups.items()
    ]


def verdict_word(passed: bool | None) -> str:
    """pass / FAIL / n/a."""
    return "n/a" if passed is None else ("pass" if passed else "FAIL")


def _check_key(area: str, name: str) -> tuple[str | None, str]:
    """(role or None for a file-level verdict, the check's canonical name)."""
    role, rest = _split_role(name)
    return role, rest if role else CHECK_ALIASES.get((area, rest), rest)


def verdict_grid(sections: Sequence[RuleSection]) -> list[tuple[str, str, list[str]]]:
    """Rows (area, check, one word per section: pass / FAIL / n/a / '-' for not checked), one per check: a
    file-level verdict ('square-root rule') and per-role verdicts of the same check ('embed sqrt rule') share
    rows, the file-level word standing for every role; roles with the same words in every file share a row
    ('all roles sqrt rule')."""
    checks: dict[tuple[str, str], list[str | None]] = {}  # (area, check) -> roles seen, first-seen order
    tables = []
    for s in sections:
        table = {}
        for v in s.desiderata.verdicts:
            role, check = _check_key(v.area, v.name)
            table[(v.area, role, check)] = verdict_word(v.passed)
            roles = checks.setdefault((v.area, check), [])
            if role not in roles:
                roles.append(role)
        tables.append(table)
    rows = []
    for (area, check), roles in checks.items():
        per_role = [r for r in roles if r is not None]
        if not per_role:
            rows.append((area, check, [t.get((area, None, check), "-") for t in tables]))
            continue
        groups: dict[tuple[str, ...], list[str]] = {}
        for role in per_role:
            words = tuple(t.get((area, role, check), t.get((area, None, check), "-")) for t in tables)
            groups.setdefault(words, []).append(role)
        rows += [(area, f"{compress_roles(rs)} {check}", list(words)) for words, rs in groups.items()]
    return rows


def scaling_summary(sections: Sequence[RuleSection]) -> list[tuple[str, list[str]]]:
    """Which files to use for which scaling: (axes, labels of the files whose desiderata for those axes all
    hold) for width, width+depth, width+depth+batch+duration, and each single axis; a check that cannot be
    decided (n/a) does not disqualify a file."""

    def holds(s: RuleSection, axes: Sequence[str]) -> bool:
        areas = {a for axis in axes for a in SCALING_AREAS[axis]}
        return all(v.passed is not False for v in s.desiderata.verdicts if v.area in areas)

    plans = [("width",), ("width", "depth"), ("width", "depth", "batch", "duration"), ("batch",), ("duration",)]
    return [(" + ".join(axes), [s.label for s in sections if holds(s, axes)]) for axes in plans]


def summary_lines(sections: Sequence[RuleSection]) -> list[str]:
    """The summary as sentences: 'scaling width + depth: completep, completedp'."""
    return [
        f"scaling {axes}: {', '.join(labels) if labels else 'none of these files'}"
        for axes, labels in scaling_summary(sections)
    ]


def equivalence_text(q: Any, limit: int = 3) -> str:
    """'equivalent' or 'differ (N): first; second; ...'."""
    if q.equivalent:
        return "equivalent"
    shown = "; ".join(q.differences[:limit])
    more = f"; ... ({len(q.differences)} in all)" if len(q.differences) > limit else ""
    return f"differ ({len(q.differences)}): {shown}{more}"


def failure_lines(section: RuleSection) -> list[str]:
    """One line per failed desideratum of a file; roles failing the same check with the same message (their own
    role name taken out) share a line: 'width / hidden init: a+b = 0 (needs = 1/2)'. Roles whose messages differ
    (other exponents) keep a line each."""
    groups: dict[tuple[str, str, str], list[str | None]] = {}
    for v in section.desiderata.verdicts:
        if v.passed is False:
            role, rest = _split_role(v.name)
            groups.setdefault((v.area, rest, _without_role(v.message, role, rest)), []).append(role)
    lines = []
    for (area, rest, message), roles in groups.items():
        named = [r for r in roles if r]
        what = f"{compress_roles(named)} {rest}" if named else rest
        lines.append(f"{area} / {what}: {message}")
    return lines


def _without_role(message: str, role: str | None, check: str) -> str:
    """A verdict's message without its leading role name and check: 'attn.q: eps m_N^1 ...' -> 'eps m_N^1 ...'."""
    if role:
        for prefix in (f"{role}: ", f"{role} "):
            if message.startswith(prefix):
                message = message[len(prefix) :]
                break
        if message.startswith(check + ": "):
            message = message[len(check) + 2 :]
    return message


def coord_cell(result: CoordCheckResult | None, sweep: str, module: str) -> str:
    """'pass (update x1.1, act x1)': the module's status and fitted ratios across the range."""
    if result is None or sweep not in result.sweeps:
        return "-"
    v = result.verdict(sweep, module)
    return f"{v.status} (update x{v.update_ratio:.2g}, act x{v.act_ratio:.2g})"


def run_description(cfg: CoordCheckConfig, sections: Sequence[RuleSection] = ()) -> str:
    """One paragraph saying how the coordinate checks were run (`sections`: each file's own eta, when they differ)."""
    eta = cfg.hp.get("eta")
    etas = {s.label: s.coord.config.hp.get("eta") for s in sections if s.coord is not None}
    if len(set(etas.values())) > 1:  # each rule at its own default eta
        eta_text = "each rule's default: " + ", ".join(f"{k} {pow2(v) if v else '-'}" for k, v in etas.items())
    else:
        eta_text = pow2(eta) if eta else "rule default"
    return (
        f"Bundled GPT trained {cfg.steps} steps with AdamW (eta = {eta_text}), "
        f"batch {cfg.batch} x seq {cfg.seq_len}, head_dim {cfg.head_dim}, {cfg.seeds} seed(s) averaged; "
        f"widths {list(cfg.widths)} at depth {cfg.depth_for_width_sweep}, depths {list(cfg.depths)} at "
        f"width {cfg.width_for_depth_sweep}. attn/mlp: summed branch outputs of all blocks (after the "
        "residual multipliers); residual: the last block's output; update = RMS of h_t - h_0 on a fixed "
        "held-out batch."
    )


def pow2(x: float) -> str:
    """2^-6 for exact powers of two, else %g."""
    k = math.log2(x) if x > 0 else 0.5
    return f"2^{int(k)}" if k == int(k) else f"{x:g}"


def empirical_sections(cmp: Comparison) -> list[RuleSection]:
    """The sections that carry a coordinate check."""
    return [s for s in cmp.sections if s.coord is not None]


def unique_labels(names: Sequence[str]) -> list[str]:
    """Short display labels for the compared files: the rule name or file stem, de-duplicated with #k."""
    out: list[str] = []
    for name in names:
        base = Path(name).stem if name.endswith(".scale") else name
        label, k = base, 2
        while label in out:
            label, k = f"{base}#{k}", k + 1
        out.append(label)
    return out


def _exponent_table(p: Any) -> Any:
    """contracts §6 `exponent_table(p)`; falls back to `compiler.exponents.exponent_table(p.ir)`."""
    if hasattr(analysis, "exponent_table"):
        return analysis.exponent_table(p)
    return exponent_table(p.ir)


def analyse(names: Sequence[str], params: Mapping[str, str] | None = None) -> Comparison:
    """Load every file and run the symbolic analysis: exponent tables, desiderata, pairwise equivalence."""
    rules = [load(n, dict(params) if params else None) for n in names]
    labels = unique_labels(names)
    sections = [
        RuleSection(label, p.name, _exponent_table(p), desiderata(p), rules=p)
        for label, p in zip(labels, rules, strict=True)
    ]
    pairs = [
        (labels[i], labels[j], equivalence(rules[i], rules[j]))
        for i in range(len(rules))
        for j in range(i + 1, len(rules))
    ]
    return Comparison(sections, pairs)
