"""`scalec compare`'s text says each role's own numbers (issue 23, item 6): failing roles share a line only when
their messages agree, and exponents print with one sign."""

from __future__ import annotations

from typer.testing import CliRunner

from scalec.cli import app
from scalec.runtime.studies.comparison import analyse, failure_lines


def test_failing_roles_keep_their_own_exponents(write_rule):
    # CompleteP with attn.q's eps x m_N^2: attn.q's eps is m_N^(-1+2) m_L^-1 = m_N^1 m_L^-1 (by hand), while the
    # embedding's eps (unscaled in CompleteP) is m_N^0 m_L^0; the gradient scale is m_N^-1 for both.
    path = write_rule("q", 'parameterisation Q extends CompleteP\n  "x"\n  role attn.q: eps *= m_N^2\n')
    (section,) = analyse([str(path)]).sections
    eps = [line for line in failure_lines(section) if line.startswith("eps / ")]
    assert "eps / attn.q eps: eps m_N^1 m_L^-1; gradient scale m_N^-1 m_L^-1 (eps swamps the gradient)" in eps
    assert any(line.startswith("eps / embed eps: eps m_N^0 m_L^0;") for line in eps), eps
    assert len(eps) == 2


def test_roles_with_the_same_failure_share_one_line(write_rule):
    path = write_rule("h", 'parameterisation H extends muP\n  "x"\n  role hidden: lr *= m_N\n')
    (section,) = analyse([str(path)]).sections
    width = [line for line in failure_lines(section) if line.startswith("width / ") and "update" in line]
    assert width == ["width / hidden update: adamw lr width exponent 0: updates grow as width^1; needs -1"]


def test_a_growing_residual_prints_one_sign(write_rule):
    path = write_rule("g", 'parameterisation G extends muP\n  "x"\n  site residual.attn, residual.mlp = m_L\n')
    result = CliRunner().invoke(app, ["compare", str(path), "mup", "--out", str(path.parent / "report")])
    assert result.exit_code == 0, result.output
    assert "^--" not in result.output and "m_L^1: alpha = -1 outside [1/2, 1]" in " ".join(result.output.split())


def test_the_run_description_names_each_rules_own_eta_when_they_differ():
    from types import SimpleNamespace

    from scalec.runtime.studies.comparison import run_description
    from scalec.runtime.studies.coord_check import CoordCheckConfig

    def section(label: str, eta: float):
        cfg = CoordCheckConfig(widths=(64, 128), depths=(2,), hp={"eta": eta})
        return SimpleNamespace(label=label, coord=SimpleNamespace(config=cfg))

    sections = [section("mup", 2**-8), section("muon", 2**-7)]
    text = run_description(sections[0].coord.config, sections)
    assert "eta = each rule's default: mup 2^-8, muon 2^-7" in text
    assert "(eta = 2^-8)" in run_description(sections[0].coord.config, sections[:1])
