"""The `compare` report as one self-contained HTML page (plots embedded as base64 PNGs; no network)."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from pathlib import Path

from scalec.runtime.studies.comparison import (
    EXPONENT_LEGEND,
    Comparison,
    coord_cell,
    empirical_sections,
    exponent_grid,
    failure_lines,
    run_description,
    summary_lines,
    verdict_grid,
)
from scalec.runtime.studies.coord_metrics import MODULES
from scalec.runtime.studies.report_markdown import sentence

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;max-width:1800px}
table{border-collapse:collapse;margin:8px 0 18px 0;font-size:13px}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f2f2f2} tr.differs td{background:#fff7e0}
td.pass{color:#176b2c} td.fail{color:#b00020;font-weight:600} td.na{color:#888}
td.lazy{color:#a15c00;font-weight:600} code{background:#f4f4f4;padding:1px 4px}
.plots{display:flex;flex-wrap:wrap;gap:12px}
.plots figure{margin:0;flex:1 1 420px;max-width:900px} .plots img{width:100%;border:1px solid #ddd}
figcaption{font-size:12px;color:#555} ul{font-size:13px}
"""


def _cls(word: str) -> str:
    head = word.split(" ", 1)[0]
    return {"pass": "pass", "FAIL": "fail", "unstable": "fail", "diverged": "fail", "lazy": "lazy"}.get(head, "na")


def _html_table(
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    row_classes: Sequence[str] = (),
    cell_classes: bool = False,
) -> str:
    e = html.escape
    out = ["<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr>"]
    for i, r in enumerate(rows):
        rc = f' class="{row_classes[i]}"' if i < len(row_classes) and row_classes[i] else ""
        tds = "".join(
            f'<td class="{_cls(c)}">{e(c)}</td>' if cell_classes and j >= 1 else f"<td>{e(c)}</td>"
            for j, c in enumerate(r)
        )
        out.append(f"<tr{rc}>{tds}</tr>")
    return "\n".join(out) + "</table>"


def _img(path: Path) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(Path(path).name)}" src="data:image/png;base64,{data}">'


def _files_html(cmp: Comparison) -> list[str]:
    """Title, command, the one-line summary per scaling, and each file's base shape and citations."""
    e = html.escape
    body = [f"<h1>scalec compare: {e(', '.join(s.label for s in cmp.sections))}</h1>"]
    if cmp.command:
        body.append(f"<p>Command: <code>{e(cmp.command)}</code></p>")
    body.append("<h2>Which one for which scaling</h2><ul>")
    body += [f"<li>{e(line)}</li>" for line in summary_lines(cmp.sections)]
    body.append("</ul><h2>Files</h2><ul>")
    for s in cmp.sections:
        cites = "".join(f"<li>{e(c)}</li>" for c in s.citations) or "<li>none given</li>"
        body.append(
            f"<li><b>{e(s.label)}</b> ({e(s.name)}): base shape <code>{e(s.base_shape)}</code><ul>{cites}</ul></li>"
        )
    body.append("</ul>")
    return body


def _exponents_html(cmp: Comparison) -> list[str]:
    """The scaling-exponent grid, rows that differ between files highlighted."""
    grid = exponent_grid(cmp.sections)
    return [
        f"<h2>Scaling exponents</h2><p>{html.escape(EXPONENT_LEGEND)} Highlighted rows differ between files.</p>",
        _html_table(
            ["subject", "HP", *[s.label for s in cmp.sections]],
            [[s, hp, *cells] for s, hp, cells, _ in grid],
            ["differs" if d else "" for *_, d in grid],
        ),
    ]


def _desiderata_html(cmp: Comparison) -> list[str]:
    """Width and depth classes, every verdict per file, and each file's failures in words."""
    e = html.escape
    rows = [
        ["width class", "", *[s.desiderata.width_class for s in cmp.sections]],
        ["depth class", "", *[s.desiderata.depth_class for s in cmp.sections]],
    ]
    rows += [[area, name, *words] for area, name, words in verdict_grid(cmp.sections)]
    body = [
        "<h2>Desiderata</h2>",
        _html_table(["area", "check", *[s.label for s in cmp.sections]], rows, cell_classes=True),
    ]
    for s in cmp.sections:
        lines = failure_lines(s)
        if lines:
            items = "".join(f"<li>{e(line)}</li>" for line in lines)
            body.append(f"<p><b>{e(s.label)}</b> fails:</p><ul>{items}</ul>")
    return body


def _equivalence_html(cmp: Comparison) -> list[str]:
    """Each pair: equivalent, or its differences (folded away in a <details>)."""
    if not cmp.equivalences:
        return []
    e = html.escape
    body = ["<h2>Equivalence (modulo each optimizer's abc-symmetry)</h2><ul>"]
    for a, b, q in cmp.equivalences:
        head = f"<b>{e(a)}</b> vs <b>{e(b)}</b>: "
        if q.equivalent:
            body.append(f"<li>{head}equivalent</li>")
        else:
            items = "".join(f"<li>{e(d)}</li>" for d in q.differences)
            body.append(
                f"<li><details><summary>{head}differ in {len(q.differences)} place(s)</summary>"
                f"<ul>{items}</ul></details></li>"
            )
    body.append("</ul>")
    return body


def _empirical_html(cmp: Comparison) -> list[str]:
    """The coordinate checks (`--empirical`): how they ran, a verdict table and plots per sweep, run times."""
    emp = empirical_sections(cmp)
    if not emp:
        return []
    e = html.escape
    cfg = emp[0].coord.config  # type: ignore[union-attr]
    body = ["<h2>Coordinate checks</h2>", f"<p>{e(run_description(cfg, emp))}</p>"]
    body.append(f"<p>{e(sentence(cfg.thresholds()))}.</p>")
    for sweep in ("width", "depth"):
        body.append(f"<h3>{sweep}</h3>")
        rows = [[m, *[coord_cell(s.coord, sweep, m) for s in emp]] for m in MODULES]
        rows.append(["all", *[s.coord.status(sweep) for s in emp]])  # type: ignore[union-attr]
        body.append(_html_table(["module", *[s.label for s in emp]], rows, cell_classes=True))
        figs = [
            f"<figure>{_img(s.plots[sweep])}<figcaption>{e(s.label)}: {sweep}</figcaption></figure>"
            for s in emp
            if sweep in s.plots
        ]
        body.append('<div class="plots">' + "".join(figs) + "</div>")
    body.append("<p>Run time: " + e(", ".join(f"{s.label} {s.coord.wall_s:.0f} s" for s in emp)) + "</p>")  # type: ignore
    return body


def render_html(cmp: Comparison) -> str:
    """The report as one self-contained HTML page (plots embedded as base64 PNGs)."""
    body = [
        *_files_html(cmp),
        *_exponents_html(cmp),
        *_desiderata_html(cmp),
        *_equivalence_html(cmp),
        *_empirical_html(cmp),
    ]
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8"><title>scalec compare</title>'
        f"<style>{_CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )
