"""The `compare` report on disk: `report.md` and a self-contained `report.html` in one folder. The pieces:
comparison.py (the analysis), report_markdown.py and report_html.py (the renderers)."""

from __future__ import annotations

from pathlib import Path

from scalec.errors import ScalecError
from scalec.runtime.studies.comparison import Comparison
from scalec.runtime.studies.report_html import render_html
from scalec.runtime.studies.report_markdown import render_markdown


class ReportError(ScalecError):
    """The report folder cannot be written."""


def ensure_report_dir(out_dir: str | Path) -> Path:
    """Create `out_dir` and check a file can be written in it (one line, before any work, when it cannot)."""
    out = Path(out_dir)
    probe = out / ".scalec-write-test"
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise ReportError(f"error: --out {out}: cannot write the report there ({exc.strerror or exc})") from None
    return out


def write_report(cmp: Comparison, out_dir: str | Path) -> tuple[Path, Path]:
    """Write `report.md` and `report.html` into `out_dir`; return both paths."""
    out = ensure_report_dir(out_dir)
    md, page = out / "report.md", out / "report.html"
    try:
        md.write_text(render_markdown(cmp, out))
        page.write_text(render_html(cmp))
    except OSError as exc:
        raise ReportError(f"error: --out {out}: cannot write the report ({exc.strerror or exc})") from None
    return md, page
