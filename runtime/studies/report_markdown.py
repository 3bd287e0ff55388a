"""The `compare` report as Markdown (plots linked relative to the report folder)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from scalec.runtime.studies.comparison import (
    EXPONENT_LEGEND,
    Comparison,
    coord_cell,
    empirical_sections,
    equivalence_text,
    exponent_grid,
    failure_lines,
    run_description,
    summary_lines,
    verdict_grid,
)
from scalec.runtime.studies.coord_check import MODULES


def sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    def esc(x: str) -> str:
        return str(x).replace("|", "\\|")

    lines = ["| " + " | ".join(esc(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def render_markdown(cmp: Comparison, out_dir: Path) -> str:
    """The report as Markdown; plots are linked relative to `out_dir`."""
    labels = [s.label for s in cmp.sections]
    parts = [f"# scalec compare: {', '.join(labels)}", ""]
    if cmp.command:
        parts += [f"Command: `{cmp.command}`", ""]
    parts += ["## Which one for which scaling", "", *[f"- {line}" for line in summary_lines(cmp.sections)], ""]
    parts += ["## Files", ""]
    for s in cmp.sections:
        cites = "; ".join(s.citations) or "none given"
        parts += [f"- **{s.label}** ({s.name}): base shape {s.base_shape}. Cites: {cites}"]
    parts += [""]
    parts += [
        "## Scaling exponents",
        "",
        EXPONENT_LEGEND + " Rows that differ between files are in bold.",
        "",
    ]
    rows = []
    for subject, hp, cells, differs in exponent_grid(cmp.sections):
        rows.append([f"**{subject}**" if differs else subject, hp, *cells])
    parts += [_md_table(["subject", "HP", *labels], rows), ""]
    parts += ["## Desiderata", ""]
    classes = [
        ["width class", "", *[s.desiderata.width_class for s in cmp.sections]],
        ["depth class", "", *[s.desiderata.depth_class for s in cmp.sections]],
    ]
    vrows = [[area, name, *words] for area, name, words in verdict_grid(cmp.sections)]
    parts += [_md_table(["area", "check", *labels], classes + vrows), ""]
    for s in cmp.sections:
        lines = failure_lines(s)
        if lines:
            parts += [f"**{s.label}** fails:", "", *[f"- {line}" for line in lines], ""]
    if cmp.equivalences:
        parts += ["## Equivalence (modulo each optimizer's abc-symmetry)", ""]
        for a, b, q in cmp.equivalences:
            parts.append(f"- {a} vs {b}: {equivalence_text(q, limit=6)}")
        parts.append("")
    emp = empirical_sections(cmp)
    if emp:
        cfg = emp[0].coord.config  # type: ignore[union-attr]
        parts += [
            "## Coordinate checks",
            "",
            run_description(cfg, emp),
            "",
            f"{sentence(cfg.thresholds())}.",
            "",
        ]
        for sweep in ("width", "depth"):
            header = ["module", *[s.label for s in emp]]
            rows = [[m, *[coord_cell(s.coord, sweep, m) for s in emp]] for m in MODULES]
            overall = ["**all**", *[s.coord.status(sweep) for s in emp]]  # type: ignore[union-attr]
            parts += [f"### {sweep}", "", _md_table(header, [*rows, overall]), ""]
            parts += [
                " ".join(f"![{s.label} {sweep}]({_rel(s.plots[sweep], out_dir)})" for s in emp if sweep in s.plots),
                "",
            ]
        parts += ["Run time: " + ", ".join(f"{s.label} {s.coord.wall_s:.0f} s" for s in emp), ""]  # type: ignore
    return "\n".join(parts)


def _rel(path: Path, base: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path(base).resolve()))
    except ValueError:
        return str(path)
