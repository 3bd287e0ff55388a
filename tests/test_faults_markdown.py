"""Fault injection into report.md: HTML, links and `|` in a rule file's name and `cite` strings are shown as
text, never rendered or split into table cells (report.html escapes the same text)."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from scalec.cli import app
from scalec.runtime.studies.report_markdown import md_code, md_escape

PAYLOADS = ["<img src=x onerror=alert(1)>", "<iframe src=javascript:alert(1)>", "[click](javascript:alert(1))"]


def test_md_escape_leaves_no_tag_link_or_cell_break():
    text = md_escape(" ".join(PAYLOADS) + " a|b `code` line\nbreak")
    assert "<" not in text and ">" not in text and "\n" not in text
    assert re.search(r"(?<!\\)[\[\]|`]", text) is None  # every [ ] | ` is escaped
    assert md_escape("m_N^-1 **bold**") == "m_N^-1 **bold**"  # exponents and our own emphasis are untouched


def test_md_code_fences_backticks_inside():
    assert md_code("a``b") == "```a``b```"
    assert md_code("`x`") == "`` `x` ``"


@pytest.mark.slow  # compiles two rule files (~2 s)
def test_report_md_shows_injected_file_names_and_cites_as_text(tmp_path):
    evil = tmp_path / "evil<img src=x onerror=alert(1)>|x.scale"
    evil.write_text(
        "parameterisation Evil extends muP\n"
        '  "A muP copy with hostile metadata."\n'
        '  cite "<iframe src=javascript:alert(1)> and [click](javascript:alert(1)) | cell"\n'
    )
    out = tmp_path / "report"
    result = CliRunner().invoke(app, ["compare", "mup", str(evil), "--out", str(out)])
    assert result.exit_code == 0, result.output
    command, md = "", (out / "report.md").read_text()
    for line in md.splitlines():
        if line.startswith("Command: "):
            command = line
    assert re.fullmatch(r"Command: (`+)[^`].*[^`]\1", command)  # a code span: nothing in it is rendered
    md = md.replace(command, "")
    assert "<img" not in md and "<iframe" not in md and not re.search(r"(?<!\\)\]\(javascript", md)
    assert "&lt;iframe src=javascript:alert(1)&gt;" in md  # shown, not dropped
    header = next(line for line in md.splitlines() if line.startswith("| subject | HP |"))
    assert len(re.findall(r"(?<!\\)\|", header)) == 5  # subject, HP and two files: nothing split a cell
