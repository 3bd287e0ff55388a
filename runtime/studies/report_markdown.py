"""The `compare` report as Markdown (plots linked relative to the report folder).

Text from the user's files (file names, NAME labels, `cite` strings, the command line) goes through `md_escape`,
the one escape for Markdown: no raw HTML, link, image or table cell can be smuggled in, as report_html escapes
the same text for HTML.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote

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
from scalec.runtime.studies.coord_metrics import MODULES

_MD_SPECIAL = re.compile(r"([\\`\[\]|])")


def md_escape(text: object) -> str:
    """Text shown literally in Markdown (inline or in a table cell): `&`, `<`, `>` as HTML entities (no raw HTML,
    no autolinks), a backslash before each of \\ ` [ ] | (no code spans, links, images or cell breaks), line
    breaks as spaces. Emphasis characters are left alone (at worst they restyle the text, never inject)."""
    text = str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MD_SPECIAL.sub(r"\\\1", " ".join(text.splitlines()))


def md_code(text: str) -> str:
    """`text` as an inline code span (fenced with more backticks than it holds; nothing inside is rendered)."""
    text = " ".join(str(text).splitlines())
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(md_escape(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(md_escape(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def render_markdown(cmp: Comparison, out_dir: Path) -> str:
    """The report as Markdown; plots are linked relative to `out_dir`."""
    labels = [s.label for s in cmp.sections]
    parts = [f"# scalec compare: {md_escape(', '.join(labels))}", ""]
    if cmp.command:
        parts += [f"Command: {md_code(cmp.command)}", ""]
    lines = summary_lines(cmp.sections)
    parts += ["## Which one for which scaling", "", *[f"- {md_escape(line)}" for line in lines], ""]
    parts += ["## Files", ""]
    for s in cmp.sections:
        cites = md_escape("; ".join(s.citations) or "none given")
        parts += [
            f"- **{md_escape(s.label)}** ({md_escape(s.name)}): base shape {md_escape(s.base_shape)}. Cites: {cites}"
        ]
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
            parts += [f"**{md_escape(s.label)}** fails:", "", *[f"- {md_escape(line)}" for line in lines], ""]
    if cmp.equivalences:
        parts += ["## Equivalence (modulo each optimizer's abc-symmetry)", ""]
        for a, b, q in cmp.equivalences:
            parts.append(f"- {md_escape(a)} vs {md_escape(b)}: {md_escape(equivalence_text(q, limit=6))}")
        parts.append("")
    emp = empirical_sections(cmp)
    if emp:
        cfg = emp[0].coord.config  # type: ignore[union-attr]
        parts += [
            "## Coordinate checks",
            "",
            md_escape(run_description(cfg, emp)),
            "",
            f"{md_escape(sentence(cfg.thresholds()))}.",
            "",
        ]
        for sweep in ("width", "depth"):
            header = ["module", *[s.label for s in emp]]
            rows = [[m, *[coord_cell(s.coord, sweep, m) for s in emp]] for m in MODULES]
            overall = ["**all**", *[s.coord.status(sweep) for s in emp]]  # type: ignore[union-attr]
            parts += [f"### {sweep}", "", _md_table(header, [*rows, overall]), ""]
            parts += [
                " ".join(
                    f"![{md_escape(s.label)} {sweep}]({_rel(s.plots[sweep], out_dir)})" for s in emp if sweep in s.plots
                ),
                "",
            ]
        parts += ["Run time: " + ", ".join(f"{md_escape(s.label)} {s.coord.wall_s:.0f} s" for s in emp), ""]  # type: ignore
    return "\n".join(parts)


def _rel(path: Path, base: Path) -> str:
    """A link target: the path relative to `base` where it lies under it, percent-encoded (no `)` or space can
    end the link early)."""
    try:
        text = str(Path(path).resolve().relative_to(Path(base).resolve()))
    except ValueError:
        text = str(path)
    return quote(text)
