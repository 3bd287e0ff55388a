"""compiler/region.py: the last block is a corner of every per-block rule, and the HP-range warnings are said
(issue 23, item 10: each survived a mutation of the line that makes it)."""

from __future__ import annotations

from pathlib import Path

import pytest

import scalec
from scalec.dsl.errors import RuleError


def test_a_per_block_rule_that_breaks_only_at_the_last_block_is_refused(write_rule):
    # lr *= (4 - l)/4: 1 at block 0, 0 at block l = 4, negative beyond; L reaches 1024, so the last block breaks.
    path = write_rule("l", 'parameterisation Lb extends muP\n  "x"\n  role hidden: lr *= (4 - l)/4\n')
    with pytest.raises(RuleError, match=r"lr of role 'attn.q' leaves its domain \(lr > 0\)"):
        scalec.load(path)


def test_a_per_block_rule_positive_at_every_block_passes(write_rule):
    path = write_rule("ok", 'parameterisation Ok extends muP\n  "x"\n  role hidden: lr *= (1 + l) / L\n')
    assert scalec.load(path).role_hparams("mlp.up", scalec.load(path).shape(L=8), layer=7).lr > 0


def test_a_rule_that_breaks_only_over_the_hp_search_range_is_a_warning(write_rule):
    # lr *= 1 + sigma - sigma * m_N^(1/4): at the default sigma = 0.02 it is >= 1.02 - 0.08 > 0 on the whole box
    # (m_N <= 512); at sigma = 1 (the top of its search range) it is 2 - 512^(1/4) < 0 at the widest n.
    path = write_rule("s", "parameterisation S extends muP\n  role hidden: lr *= 1 + sigma - sigma * m_N^(1/4)\n")
    warnings = scalec.load(path).report.warnings
    assert any(w.startswith("lr > 0 may break over the hp search ranges: ") for w in warnings), warnings
    assert any(w.endswith("; narrow the hp search range") for w in warnings)


def test_a_constraint_that_the_search_range_breaks_at_the_base_shape_is_a_warning(write_rule):
    # A root file with beta1 = 1 - (1 - b) * s * m_B/m_D: at the base 1-beta1 = (1 - b) s, <= 1 at the defaults
    # (0.1) but 0.5 * 4 = 2 > 1 at b = 0.5, s = 4 (both inside their search ranges).
    text = (Path(__file__).parents[1] / "rules" / "sp.scale").read_text()
    text = text.replace("parameterisation SP", "parameterisation Root")
    hps = "hp b = 0.9 in [0.5, 0.99] linear\n  hp s = 1 in [1/4, 4] log"
    text = text.replace("hp beta1 = 0.9 in [0.5, 0.99] linear", hps)
    text = text.replace("beta1 = beta1;", "beta1 = 1 - (1 - b) * s * m_B / m_D;")
    warnings = scalec.load(write_rule("root", text)).report.warnings
    assert any(w.startswith("0 <= beta1 < 1 may break at the base shape: 1-beta1 = ") for w in warnings), warnings
