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

from scalec.compiler.exponents import fmt_fraction
from scalec.compiler.vocabulary import ROLES, compress_roles
from scalec.runtime.studies.coord_check import MODULES, CoordCheckConfig, CoordCheckResult

AXIS_LABELS: dict[str, str] = {"n": "m_N", "L": "m_L", "B": "m_B", "D": "m_D"}
ALL_ROLES: tuple[str, ...] = tuple(ROLES)
MAIN_AXES: tuple[str, ...] = ("n", "L", "B", "D")
EXPONENT_LEGEND = (
    "Each cell is the factor multiplying the base value (m_N = n/n0, m_L = L/L0, m_B = B/B0, m_D = D/D0); "
    "'1' = unscaled, '-' = no such row in that file; rows unscaled in every file are left out."
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


def verdict_grid(sections: Sequence[RuleSection]) -> list[tuple[str, str, list[str]]]:
    """Rows (area, check, one word per section: pass / FAIL / n/a / '-' for not checked) over all desiderata
    in first-seen order; per-role checks with the same words in every file share a row ('hidden init')."""
    order: list[tuple[str, str]] = []
    tables = []
    for s in sections:
        table = {}
        for v in s.desiderata.verdicts:
            key = (v.area, v.name)
            table[key] = verdict_word(v.passed)
            if key not in order:
                order.append(key)
        tables.append(table)
    groups: dict[tuple[str, str, tuple[str, ...]], list[str]] = {}
    for area, name in order:
        words = tuple(t.get((area, name), "-") for t in tables)
        role, rest = _split_role(name)
        groups.setdefault((area, rest, words), []).append(role or "")
    return [
        (area, f"{compress_roles(roles)} {rest}" if roles[0] else rest, list(words))
        for (area, rest, words), roles in groups.items()
    ]


def equivalence_text(q: Any, limit: int = 3) -> str:
    """'equivalent' or 'differ (N): first; second; ...'."""
    if q.equivalent:
        return "equivalent"
    shown = "; ".join(q.differences[:limit])
    more = f"; ... ({len(q.differences)} in all)" if len(q.differences) > limit else ""
    return f"differ ({len(q.differences)}): {shown}{more}"


def failure_lines(section: RuleSection) -> list[str]:
    """One line per failed desideratum of a file, per-role failures with the same check merged:
    'width / hidden init: a+b = 0 (needs = 1/2); ...'."""
    groups: dict[tuple[str, str], list[Any]] = {}
    for v in section.desiderata.verdicts:
        if v.passed is False:
            role, rest = _split_role(v.name)
            groups.setdefault((v.area, rest), []).append((role, v))
    lines = []
    for (area, rest), items in groups.items():
        roles = [r for r, _ in items if r]
        first_role, first = items[0]
        message = first.message
        for prefix in (f"{first_role}: ", f"{first_role} "):
            if first_role and message.startswith(prefix):
                message = message[len(prefix) :]
                break
        if first_role and message.startswith(rest + ": "):
            message = message[len(rest) + 2 :]
        what = f"{compress_roles(roles)} {rest}" if roles else rest
        lines.append(f"{area} / {what}: {message}")
    return lines


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


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


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
    emp = _empirical_sections(cmp)
    if emp:
        cfg = emp[0].coord.config  # type: ignore[union-attr]
        parts += [
            "## Coordinate checks",
            "",
            run_description(cfg),
            "",
            f"{_sentence(cfg.thresholds())}.",
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


def render_html(cmp: Comparison) -> str:
    """The report as one self-contained HTML page (plots embedded as base64 PNGs)."""
    e = html.escape
    labels = [s.label for s in cmp.sections]
    body = [f"<h1>scalec compare: {e(', '.join(labels))}</h1>"]
    if cmp.command:
        body.append(f"<p>Command: <code>{e(cmp.command)}</code></p>")
    body.append(f"<h2>Scaling exponents</h2><p>{e(EXPONENT_LEGEND)} Highlighted rows differ between files.</p>")
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
    rows += [[area, name, *words] for area, name, words in verdict_grid(cmp.sections)]
    body.append(_html_table(["area", "check", *labels], rows, cell_classes=True))
    for s in cmp.sections:
        lines = failure_lines(s)
        if lines:
            items = "".join(f"<li>{e(line)}</li>" for line in lines)
            body.append(f"<p><b>{e(s.label)}</b> fails:</p><ul>{items}</ul>")
    if cmp.equivalences:
        body.append("<h2>Equivalence (modulo each optimizer's abc-symmetry)</h2><ul>")
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
    emp = _empirical_sections(cmp)
    if emp:
        cfg = emp[0].coord.config  # type: ignore[union-attr]
        body.append("<h2>Coordinate checks</h2>")
        body.append(f"<p>{e(run_description(cfg))}</p>")
        body.append(f"<p>{e(_sentence(cfg.thresholds()))}.</p>")
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


def _exponent_table(p: Any) -> Any:
    """contracts §6 `exponent_table(p)`; falls back to `compiler.exponents.exponent_table(p.ir)`."""
    from scalec.compiler import analysis

    if hasattr(analysis, "exponent_table"):
        return analysis.exponent_table(p)
    from scalec.compiler.exponents import exponent_table

    return exponent_table(p.ir)


def analyse(names: Sequence[str], params: Mapping[str, str] | None = None) -> Comparison:
    """Load every file and run the symbolic analysis: exponent tables, desiderata, pairwise equivalence."""
    import scalec
    from scalec.compiler.analysis import desiderata, equivalence

    rules = [scalec.load(n, dict(params) if params else None) for n in names]
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
