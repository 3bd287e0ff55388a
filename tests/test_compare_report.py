"""`scalec compare`: side-by-side symbolic tables, desiderata, equivalence, and the self-contained report."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
import pytest
from typer.testing import CliRunner

from scalec.cli import app
from scalec.compiler.vocabulary import compress_roles
from scalec.runtime.studies.comparison import (
    Comparison,
    RuleSection,
    analyse,
    exponent_grid,
    format_exponents,
    unique_labels,
    verdict_grid,
)
from scalec.runtime.studies.report_html import render_html
from scalec.runtime.studies.report_markdown import render_markdown

RULES = ["sp", "mup", "completep", "completedp"]


@dataclass
class _Row:
    subject: str
    hp: str
    exponents: dict
    symbolic: dict = field(default_factory=dict)
    zero: bool = False


@dataclass
class _Table:
    rows: list


@dataclass
class _Desiderata:
    verdicts: list = field(default_factory=list)
    width_class: str = "muP-like"
    depth_class: str = "no depth scaling"


def _section(label: str, rows: list[_Row]) -> RuleSection:
    return RuleSection(label, label, _Table(rows), _Desiderata())


def _text_corpus(n_bytes: int = 60_000, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    words = ["".join(rng.choice(list("etaoinshrdlu"), size=rng.integers(1, 7))) for _ in range(200)]
    p = 1.0 / np.arange(1, len(words) + 1)
    text = " ".join(rng.choice(words, size=n_bytes // 3, p=p / p.sum()))
    return text.encode()[:n_bytes]


@pytest.fixture(scope="module")
def symbolic_report(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("report")
    result = CliRunner().invoke(app, ["compare", *RULES, "--out", str(out)])
    return result, out


def test_exponent_cells_list_the_four_axes():
    assert format_exponents({"n": Fraction(-1), "L": Fraction(1, 2), "B": Fraction(0)}) == "m_N^-1 m_L^1/2"
    assert format_exponents({"n": Fraction(0), "d_head": Fraction(-1)}) == "d_head^-1"
    assert format_exponents({"n": Fraction(0)}) == "1" and format_exponents({"n": None}) == "n/a"


def test_grid_drops_unscaled_rows_merges_roles_and_flags_differences():
    zero = {"n": Fraction(0), "L": Fraction(0), "B": Fraction(0), "D": Fraction(0)}
    hidden = ["attn.q", "attn.k", "attn.v", "attn.o", "mlp.up", "mlp.gate", "mlp.down"]
    rows = [_Row("embed", "lr", zero)] + [_Row(r, "lr", {**zero, "n": Fraction(-1)}) for r in hidden]
    a = _section("a", rows)
    b = _section("b", [*rows, _Row("residual.attn", "site", {**zero, "L": Fraction(-1)})])
    grid = exponent_grid([a, b])
    assert grid == [("hidden", "lr", ["m_N^-1", "m_N^-1"], False), ("residual.attn", "site", ["-", "m_L^-1"], True)]


def test_labels_are_short_and_unique():
    assert unique_labels(["mup", "rules/my_rule.scale", "mup"]) == ["mup", "my_rule", "mup#2"]
    assert compress_roles(["embed", "attn.q", "attn.k", "attn.v", "attn.o", "norm"]) == "embed, attn.*, norm"


def test_html_escapes_and_needs_no_network(tmp_path):
    zero = {"n": Fraction(0), "L": Fraction(0), "B": Fraction(0), "D": Fraction(0)}
    cmp = Comparison([_section("<a>", [_Row("attn.q", "lr", {**zero, "n": Fraction(-1)})]), _section("b", [])], [])
    page = render_html(cmp)
    assert "&lt;a&gt;" in page and "<a>" not in page
    assert not re.search(r"(src|href)=\"https?:", page)
    assert "| **attn.q** | lr | m_N^-1 | - |" in render_markdown(cmp, tmp_path)  # differing rows in bold


@pytest.mark.slow
def test_compare_prints_tables_and_writes_report(symbolic_report):
    result, out = symbolic_report
    assert result.exit_code == 0, result.output
    for label in RULES:
        assert label in result.output
    assert "Each cell is the factor multiplying the base value" in result.output and "desiderata" in result.output
    md, page = (out / "report.md").read_text(), (out / "report.html").read_text()
    for heading in ("## Scaling exponents", "## Desiderata", "## Equivalence"):
        assert heading in md
    assert page.startswith("<!DOCTYPE html>") and "<img" not in page
    assert "residual.attn" in md  # CompleteP's residual multiplier differs from SP/muP


@pytest.mark.slow
def test_compare_shows_mup_table3_equivalent_to_mup(tmp_path):
    result = CliRunner().invoke(app, ["compare", "mup", "mup_table3", "sp", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "mup vs mup_table3: equivalent" in result.output
    assert "mup vs sp: differ" in result.output
    md = (tmp_path / "report.md").read_text()
    assert "- mup vs mup_table3: equivalent" in md and "- mup vs sp: differ" in md


@pytest.mark.slow
def test_only_alpha_one_is_reported_complete():
    cmp = analyse(["sp", "mup", "depth_mup", "completep", "completedp"])
    complete = [s.label for s in cmp.sections if "complete feature learning" in s.desiderata.depth_class]
    assert complete == ["completep", "completedp"]
    assert "lazy" in cmp.sections[2].desiderata.depth_class
    half = analyse(["completep"], {"alpha": "1/2"}).sections[0].desiderata.depth_class
    assert "alpha=1/2" in half and "complete feature learning" not in half


def test_compare_needs_two_files():
    result = CliRunner().invoke(app, ["compare", "mup"])
    assert result.exit_code == 1 and result.output.strip().startswith("error:")
    assert len(result.output.strip().splitlines()) == 1


@pytest.mark.slow
def test_empirical_report_embeds_plots_and_verdicts(tmp_path, monkeypatch):
    monkeypatch.setenv("SCALEC_CACHE", str(tmp_path / "cache"))
    corpus = tmp_path / "corpus.txt"
    corpus.write_bytes(_text_corpus())
    out = tmp_path / "rep"
    result = CliRunner().invoke(
        app,
        [
            "compare",
            "sp",
            "completep",
            "--empirical",
            "--widths",
            "32,64",
            "--depths",
            "1,2",
            "--steps",
            "2",
            "--seeds",
            "1",
            "--seq-len",
            "16",
            "--corpus",
            str(corpus),
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "coordinate check vs width" in result.output and "coordinate check vs depth" in result.output
    page, md = (out / "report.html").read_text(), (out / "report.md").read_text()
    assert page.count('src="data:image/png;base64,') == 4  # 2 files x (width, depth), embedded
    assert "## Coordinate checks" in md and "### width" in md and "### depth" in md
    for label in ("sp", "completep"):
        for sweep in ("width", "depth"):
            assert f"]({label}/coord_{sweep}.png)" in md and (out / label / f"coord_{sweep}.png").is_file()
        assert (out / label / "coord_check.json").is_file()


def test_one_check_is_one_row_whether_a_file_checks_it_once_or_per_role():
    """SP has no batch rule (one file-level 'square-root rule' verdict), Complete(d)P one per role ('embed sqrt
    rule', ...): both are Malladi et al.'s square-root rule, so the report shows them on one row, FAIL vs pass."""

    @dataclass
    class V:
        area: str
        name: str
        passed: bool | None
        message: str = ""

    sp = RuleSection("sp", "SP", _Table([]), _Desiderata([V("batch", "square-root rule", False)]))
    cdp = RuleSection(
        "cdp", "CDP", _Table([]), _Desiderata([V("batch", f"{r} sqrt rule", True) for r in ("embed", "unembed")])
    )
    assert verdict_grid([sp, cdp]) == [("batch", "embed, unembed sqrt rule", ["FAIL", "pass"])]


@pytest.mark.slow
def test_report_gives_base_shapes_citations_and_which_file_for_which_scaling(symbolic_report):
    result, out = symbolic_report
    md = (out / "report.md").read_text()
    # base shape n0=128, L0=2 as the rule files declare it; citations of the papers each file implements
    for label in RULES:
        line = next(x for x in md.splitlines() if x.startswith(f"- **{label}**"))
        assert "base shape n=128, L=2" in line
    assert "arXiv 2512.22382" in next(x for x in md.splitlines() if x.startswith("- **completedp**"))
    assert "arXiv 2512.22382" not in next(x for x in md.splitlines() if x.startswith("- **completep**"))
    # muP transfers across width only; CompleteP adds depth (Dey et al. 2025); Complete(d)P adds batch and
    # duration (Mlodozeniec et al. 2025); SP transfers nothing.
    assert "- scaling width: mup, completep, completedp" in md
    assert "- scaling width + depth: completep, completedp" in md
    assert "- scaling width + depth + batch + duration: completedp" in md
    assert "which one for which scaling:" in result.output
    rows = [x for x in md.splitlines() if x.startswith("| batch |")]
    assert rows == ["| batch | all roles sqrt rule | FAIL | FAIL | FAIL | pass |"]


def test_unwritable_out_is_one_line_before_any_work(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    for out in ("/proc/scalec-report", str(blocker / "sub")):
        result = CliRunner().invoke(app, ["compare", "sp", "mup", "--out", out])
        assert result.exit_code == 1 and result.output.strip().startswith(f"error: --out {out}")
        assert len(result.output.strip().splitlines()) == 1
