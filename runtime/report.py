"""The `compare` report: symbolic exponent tables, desiderata verdicts, pairwise equivalence and (optionally)
coordinate-check plots and verdicts of several rule files, as Markdown (PNGs linked) and one self-contained
HTML file (PNGs embedded as base64)."""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from .coord_check import MODULES, CoordCheckConfig, CoordCheckResult

AXIS_LABELS: dict[str, str] = {"n": "m_N", "L": "m_L", "B": "m_B", "D": "m_D"}
MAIN_AXES: tuple[str, ...] = ("n", "L", "B", "D")
EXPONENT_LEGEND = (
    "Each cell gives the exponents of (m_N, m_L, m_B, m_D) multiplying the base value; "
    "'-' = no such row in that file; rows that are zero in every file are left out."
)


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


@dataclass
class Comparison:
    """Everything the report shows: the sections and the pairwise (label_a, label_b, Equivalence)."""

    sections: list[RuleSection]
    equivalences: list[tuple[str, str, Any]]
    command: str = ""


def format_exponent(e: Fraction | None) -> str:
    """An exponent as text: 0, -1, 1/2; None (not a power law) as 'n/a'."""
    if e is None:
        return "n/a"
    e = Fraction(e)
    return str(e.numerator) if e.denominator == 1 else f"{e.numerator}/{e.denominator}"


def format_exponents(exponents: Mapping[str, Fraction | None]) -> str:
    """Exponents of (m_N, m_L, m_B, m_D) as one cell: '-1, 0, 1/2, -1/2'."""
    return ", ".join(format_exponent(exponents.get(a, Fraction(0))) for a in MAIN_AXES)


def exponent_grid(sections: Sequence[RuleSection]) -> list[tuple[str, str, list[str], bool]]:
    """Rows (subject, hp, one cell per section, differs) over the union of every section's rows, in first-seen
    order, leaving out rows whose exponents are all zero in every file; '-' = the file has no such row."""
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
    zero = format_exponents({})
    out = []
    for key in order:
        values = [c.get(key, "-") for c in cells]
        if all(v in (zero, "-") for v in values):
            continue
        out.append((key[0], key[1], values, len(set(values)) > 1))
    return out


def verdict_grid(sections: Sequence[RuleSection]) -> list[tuple[str, str, list[Any]]]:
    """Rows (area, name, one Verdict or None per section) over all desiderata, in first-seen order."""
    order: list[tuple[str, str]] = []
    tables = []
    for s in sections:
        table = {}
        for v in s.desiderata.verdicts:
            key = (v.area, v.name)
            table[key] = v
            if key not in order:
                order.append(key)
        tables.append(table)
    return [(area, name, [t.get((area, name)) for t in tables]) for area, name in order]


def verdict_word(passed: bool | None) -> str:
    """pass / FAIL / n/a."""
    return "n/a" if passed is None else ("pass" if passed else "FAIL")


def coord_cell(result: CoordCheckResult | None, sweep: str, module: str) -> str:
    """'pass (update x1.1, act x1)': the module's status and fitted ratios across the range."""
    if result is None or sweep not in result.sweeps:
        return "-"
    v = result.verdict(sweep, module)
    return f"{v.status} (update x{v.update_ratio:.2g}, act x{v.act_ratio:.2g})"


def run_description(cfg: CoordCheckConfig) -> str:
    """One paragraph saying how the coordinate checks were run."""
    eta = cfg.hp.get("eta")
    return (
        f"Bundled GPT trained {cfg.steps} steps with AdamW (eta = {_pow2(eta) if eta else 'rule default'}), "
        f"batch {cfg.batch} x seq {cfg.seq_len}, head_dim {cfg.head_dim}, {cfg.seeds} seed(s) averaged; "
        f"widths {list(cfg.widths)} at depth {cfg.depth_for_width_sweep}, depths {list(cfg.depths)} at "
        f"width {cfg.width_for_depth_sweep}. attn/mlp: summed branch outputs of all blocks (after the "
        "residual multipliers); residual: the last block's output; update = RMS of h_t - h_0 on a fixed "
        "held-out batch."
    )


def _pow2(x: float) -> str:
    """2^-6 for exact powers of two, else %g."""
    k = math.log2(x) if x > 0 else 0.5
    return f"2^{int(k)}" if k == int(k) else f"{x:g}"


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    def esc(x: str) -> str:
        return str(x).replace("|", "\\|")

    lines = ["| " + " | ".join(esc(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _empirical_sections(cmp: Comparison) -> list[RuleSection]:
    return [s for s in cmp.sections if s.coord is not None]


def render_markdown(cmp: Comparison, out_dir: Path) -> str:
    """The report as Markdown; plots are linked relative to `out_dir`."""
    labels = [s.label for s in cmp.sections]
    parts = [f"# scalec compare: {', '.join(labels)}", ""]
    if cmp.command:
        parts += [f"Command: `{cmp.command}`", ""]
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
    vrows = [
        [area, name, *[verdict_word(v.passed) if v else "-" for v in vs]]
        for area, name, vs in verdict_grid(cmp.sections)
    ]
    parts += [_md_table(["area", "check", *labels], classes + vrows), ""]
    for s in cmp.sections:
        failed = [v for v in s.desiderata.verdicts if v.passed is False]
        if failed:
            parts += (
                [f"**{s.label}** fails:", ""] + [f"- {v.area} / {v.name}: {v.message}" for v in failed] + [""]
            )
    if cmp.equivalences:
        parts += ["## Equivalence (modulo the Adam abc-symmetry)", ""]
        for a, b, e in cmp.equivalences:
            if e.equivalent:
                parts.append(f"- {a} == {b}: equivalent")
            else:
                parts.append(
                    f"- {a} vs {b}: differ - "
                    + "; ".join(e.differences[:6])
                    + (f"; ... ({len(e.differences)} in all)" if len(e.differences) > 6 else "")
                )
        parts.append("")
    emp = _empirical_sections(cmp)
    if emp:
        cfg = emp[0].coord.config  # type: ignore[union-attr]
        parts += [
            "## Coordinate checks",
            "",
            run_description(cfg),
            "",
            f"{cfg.thresholds().capitalize()}.",
            "",
        ]
        for sweep in ("width", "depth"):
            header = ["module", *[s.label for s in emp]]
            rows = [[m, *[coord_cell(s.coord, sweep, m) for s in emp]] for m in MODULES]
            overall = ["**all**", *[s.coord.status(sweep) for s in emp]]  # type: ignore[union-attr]
            parts += [f"### {sweep}", "", _md_table(header, [*rows, overall]), ""]
            parts += [
                " ".join(
                    f"![{s.label} {sweep}]({_rel(s.plots[sweep], out_dir)})" for s in emp if sweep in s.plots
                ),
                "",
            ]
        parts += ["Run time: " + ", ".join(f"{s.label} {s.coord.wall_s:.0f} s" for s in emp), ""]  # type: ignore
    return "\n".join(parts)


def _rel(path: Path, base: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path(base).resolve()))
    except ValueError:
        return str(path)


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
    return {"pass": "pass", "FAIL": "fail", "unstable": "fail", "diverged": "fail", "lazy": "lazy"}.get(
        head, "na"
    )


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


def render_html(cmp: Comparison) -> str:
    """The report as one self-contained HTML page (plots embedded as base64 PNGs)."""
    e = html.escape
    labels = [s.label for s in cmp.sections]
    body = [f"<h1>scalec compare: {e(', '.join(labels))}</h1>"]
    if cmp.command:
        body.append(f"<p>Command: <code>{e(cmp.command)}</code></p>")
    body.append(
        f"<h2>Scaling exponents</h2><p>{e(EXPONENT_LEGEND)} Highlighted rows differ between files.</p>"
    )
    grid = exponent_grid(cmp.sections)
    body.append(
        _html_table(
            ["subject", "HP", *labels],
            [[s, hp, *cells] for s, hp, cells, _ in grid],
            ["differs" if d else "" for *_, d in grid],
        )
    )
    body.append("<h2>Desiderata</h2>")
    rows = [
        ["width class", "", *[s.desiderata.width_class for s in cmp.sections]],
        ["depth class", "", *[s.desiderata.depth_class for s in cmp.sections]],
    ]
    rows += [
        [area, name, *[verdict_word(v.passed) if v else "-" for v in vs]]
        for area, name, vs in verdict_grid(cmp.sections)
    ]
    body.append(_html_table(["area", "check", *labels], rows, cell_classes=True))
    for s in cmp.sections:
        failed = [v for v in s.desiderata.verdicts if v.passed is False]
        if failed:
            body.append(
                f"<p><b>{e(s.label)}</b> fails:</p><ul>"
                + "".join(f"<li>{e(v.area)} / {e(v.name)}: {e(v.message)}</li>" for v in failed)
                + "</ul>"
            )
    if cmp.equivalences:
        body.append("<h2>Equivalence (modulo the Adam abc-symmetry)</h2><ul>")
        for a, b, q in cmp.equivalences:
            text = "equivalent" if q.equivalent else "differ: " + "; ".join(q.differences)
            body.append(f"<li><b>{e(a)}</b> vs <b>{e(b)}</b>: {e(text)}</li>")
        body.append("</ul>")
    emp = _empirical_sections(cmp)
    if emp:
        cfg = emp[0].coord.config  # type: ignore[union-attr]
        body.append("<h2>Coordinate checks</h2>")
        body.append(f"<p>{e(run_description(cfg))}</p>")
        body.append(f"<p>{e(cfg.thresholds().capitalize())}.</p>")
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
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8"><title>scalec compare</title>'
        f"<style>{_CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def write_report(cmp: Comparison, out_dir: str | Path) -> tuple[Path, Path]:
    """Write `report.md` and `report.html` into `out_dir`; return both paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    md, page = out / "report.md", out / "report.html"
    md.write_text(render_markdown(cmp, out))
    page.write_text(render_html(cmp))
    return md, page


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


def analyse(names: Sequence[str], params: Mapping[str, str] | None = None) -> Comparison:
    """Load every file and run the symbolic analysis: exponent tables, desiderata, pairwise equivalence."""
    from scalec.compiler.analysis import desiderata, equivalence, exponent_table

    import scalec

    rules = [scalec.load(n, dict(params) if params else None) for n in names]
    labels = unique_labels(names)
    sections = [
        RuleSection(label, p.name, exponent_table(p), desiderata(p), rules=p)
        for label, p in zip(labels, rules)
    ]
    pairs = [
        (labels[i], labels[j], equivalence(rules[i], rules[j]))
        for i in range(len(rules))
        for j in range(i + 1, len(rules))
    ]
    return Comparison(sections, pairs)
