"""Inputs that used to be taken silently are refused in one line (issue 23, item 9): a negative warmup, a parent
rule found by a stray file's header over its own file, an empty item in a comma list."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

import scalec
from scalec.cli import app
from scalec.compiler.analysis import role_exps
from scalec.dsl.errors import RuleError
from scalec.errors import ScalecError
from scalec.parsing import parse_ints
from scalec.runtime.studies.hp_grid import HPSpecError, parse_hp_spec
from scalec.runtime.trainer.train_config import TrainConfig, TrainConfigError


@pytest.mark.parametrize("warmup", [-5, -0.1, 2.5, float("nan")])
def test_a_warmup_that_is_neither_a_fraction_nor_a_step_count_is_refused(warmup):
    with pytest.raises(TrainConfigError, match=r"--warmup must be a fraction of the run in \[0, 1\) or a whole"):
        TrainConfig(rule="mup", width=32, depth=1, steps=10, warmup=warmup)


def test_warmup_fractions_and_step_counts_are_taken():
    assert TrainConfig(rule="mup", width=32, depth=1, steps=10, warmup=0.05).warmup == 0.05
    assert TrainConfig(rule="mup", width=32, depth=1, steps=10, warmup=3).warmup == 3


def test_cli_train_refuses_a_negative_warmup_in_one_line(tmp_path):
    result = CliRunner().invoke(app, ["train", "mup", "--steps", "2", "--warmup", "-5", "--out", str(tmp_path / "r")])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 1 and len(lines) == 1 and "--warmup must be" in lines[0], result.output
    assert not (tmp_path / "r").exists()


def _stray_and_child(write_rule):
    # A stray sibling declares the same name as the bundled mup.scale, with a different hidden lr (m_N^-2).
    write_rule("stray", 'parameterisation muP extends SP\n  "a stray copy"\n  role hidden: lr *= m_N^-2\n')
    return write_rule("child", 'parameterisation Child extends muP\n  "x"\n')


def test_extends_resolves_by_file_name_before_a_stray_header(write_rule):
    child = scalec.load(_stray_and_child(write_rule))
    assert child.ir.lineage == ("SP", "muP", "Child")
    assert child.ir.paths[1].endswith("rules/mup.scale")
    assert role_exps(child.ir, "mlp.up", "lr")["n"] == -1  # muP Table 8: hidden lr 1/width, not the stray's -2


def test_a_sibling_named_like_the_parent_wins_over_the_bundled_file(write_rule):
    write_rule("mup", 'parameterisation muP extends SP\n  "a local muP"\n  role hidden: lr *= m_N^-2\n')
    child = scalec.load(write_rule("child", 'parameterisation Child extends muP\n  "x"\n'))
    assert role_exps(child.ir, "mlp.up", "lr")["n"] == -2


def test_two_files_declaring_the_parent_are_refused_as_ambiguous(write_rule):
    write_rule("one", 'parameterisation Base extends SP\n  "one"\n')
    write_rule("two", 'parameterisation Base extends muP\n  "two"\n')
    child = write_rule("child", 'parameterisation Child extends Base\n  "x"\n')
    with pytest.raises(RuleError, match=r"parent 'Base' is ambiguous: one.scale, two.scale .* by header"):
        scalec.load(child)


def test_an_empty_item_in_a_comma_list_is_refused():
    with pytest.raises(HPSpecError, match=r"--hp 'eta=1,,2': an empty item between commas"):
        parse_hp_spec("eta=1,,2")
    assert parse_hp_spec("eta=1,2").values == (1.0, 2.0)
    with pytest.raises(ScalecError, match=r"empty item between commas"):
        parse_ints("64,,128", "--widths")
    assert parse_ints("64,128", "--widths") == (64, 128)


def test_cli_sweep_refuses_an_empty_hp_item_in_one_line():
    result = CliRunner().invoke(app, ["sweep", "mup", "--hp", "eta=1,,2", "--steps", "2"])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 1 and len(lines) == 1 and "empty item" in lines[0], result.output
