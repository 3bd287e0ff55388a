"""Depth profiles in the rule language: `hp NAME = ... knots K`, used as `NAME(l)`; parsing, formatting, errors."""

from __future__ import annotations

import pytest

import scalec
from scalec.dsl.errors import RuleError
from scalec.dsl.formatter import format_file
from scalec.dsl.parser import parse

HEAD = 'parameterisation P extends CompleteP\n  "x"\n'


def test_profile_declaration_parses_and_formats_back():
    src = HEAD + "  hp lr_depth = 1 in [1/8, 8] log knots 3  # three knots\n  role hidden: lr *= lr_depth(l)\n"
    f = parse(src, "p.scale")
    decl = f.statements[1]
    assert (decl.name, decl.scale, decl.knots) == ("lr_depth", "log", 3)
    out = format_file(f)
    assert out == src  # canonical already: the formatter keeps `knots 3` and the comment
    assert parse(out) == f


def test_formatter_writes_knots_without_a_scale():
    f = parse("parameterisation P\n  hp c = 1 in [1/4,4]   knots 1\n", "p.scale")
    assert format_file(f) == "parameterisation P\n  hp c = 1 in [1/4, 4] knots 1\n"


# ---- golden errors: one located line, the source, a caret, a hint ------------------------------------------
DECL = "  hp lr_depth = 1 in [1/8, 8] log knots 3\n"
GOLDEN = {
    "zero_knots": (
        HEAD + "  hp p = 1 in [1/8, 8] knots 0\n",
        "p.scale:3:30: error: a depth profile takes a whole number of knots from 1 to 64, not 0\n"
        "      hp p = 1 in [1/8, 8] knots 0\n"
        "                                 ^\n"
        "hint: e.g. `knots 3` (knots at relative depths 0, 1/2, 1); `knots 1` is one constant",
    ),
    "fractional_knots": (
        HEAD + "  hp p = 1 in [1/8, 8] knots 2.5\n",
        "p.scale:3:30: error: a depth profile takes a whole number of knots from 1 to 64, not 2.5",
    ),
    "non_positive_range": (
        HEAD + "  hp p = 1 in [0, 8] knots 3\n",
        "p.scale:3:12: error: depth profile 'p' is interpolated in log space, but its range reaches 0\n"
        "      hp p = 1 in [0, 8] knots 3\n"
        "               ^^^^^^^^^\n"
        "hint: give a positive range, e.g. [1/8, 8]",
    ),
    "linear_scale": (
        HEAD + "  hp p = 1 in [1/8, 8] linear knots 3\n",
        "p.scale:3:6: error: depth profile 'p' is interpolated and searched in log space; it cannot be linear",
    ),
    "no_range": (
        HEAD + "  hp p = 1 knots 3\n",
        "p.scale:3:6: error: depth profile 'p' needs a search range for its knots",
    ),
    "without_l": (
        HEAD + DECL + "  role hidden: lr *= lr_depth\n",
        "p.scale:4:22: error: 'lr_depth' is a depth profile of 3 knots; rules use the profile's value at the "
        "block: lr_depth(l)\n"
        "      role hidden: lr *= lr_depth\n"
        "                         ^^^^^^^^\n"
        "hint: write e.g. `role hidden: lr *= lr_depth(l)`",
    ),
    "other_argument": (
        HEAD + DECL + "  role hidden: lr *= lr_depth(l + 1)\n",
        "p.scale:4:22: error: depth profile 'lr_depth' takes the block index: write lr_depth(l)",
    ),
    "a_knot_by_name": (
        HEAD + DECL + "  role hidden: lr *= lr_depth_0\n",
        "p.scale:4:22: error: 'lr_depth_0' is a knot of depth profile 'lr_depth'; rules use the profile's value at "
        "the block: lr_depth(l)",
    ),
    "a_knot_in_a_child": (
        'parameterisation Q extends CompleteP_profile\n  "x"\n  role hidden: lr *= lr_depth_1\n',
        "p.scale:3:22: error: 'lr_depth_1' is a knot of depth profile 'lr_depth'",
    ),
    "knot_count_in_a_child": (
        'parameterisation Q extends CompleteP_profile\n  "x"\n  hp lr_depth = 1 in [1/4, 4] log knots 5\n',
        "p.scale:3:6: error: depth profile 'lr_depth' has 3 knots in the parent; a child may change its default and "
        "range, not its knot count",
    ),
    "site_rule": (
        HEAD + DECL + "  site residual.attn *= lr_depth(l)\n",
        "p.scale:4:25: error: depth profile 'lr_depth' varies per block: only role rules may use it\n"
        "      site residual.attn *= lr_depth(l)\n"
        "                            ^^^^^^^^^^^\n"
        "hint: use it in a role rule for roles inside blocks, e.g. `role hidden: lr *= lr_depth(l)`",
    ),
    "let": (
        HEAD + DECL + "  let x = lr_depth(l)\n",
        "p.scale:4:11: error: depth profile 'lr_depth' varies per block: only role rules may use it",
    ),
    "unknown_profile": (
        HEAD + DECL + "  role hidden: lr *= lr_dept(l)\n",
        "p.scale:4:22: error: unknown function 'lr_dept'\n"
        "      role hidden: lr *= lr_dept(l)\n"
        "                         ^^^^^^^^^^\n"
        "hint: did you mean 'lr_depth'?",
    ),
    "outside_blocks": (
        HEAD + DECL + "  role embed: lr *= lr_depth(l)\n",
        "p.scale:4:21: error: the block index l is not defined for role 'embed' (not inside a residual block)",
    ),
    "knot_name_taken": (
        HEAD + "  hp a_1 = 1 in [1, 2]\n  hp a = 1 in [1/8, 8] knots 2\n",
        "p.scale:4:6: error: knot 'a_1' of depth profile 'a' is already a name",
    ),
    "hp_over_a_knot": (
        HEAD + "  hp a = 1 in [1/8, 8] knots 2\n  hp a_0 = 1 in [1, 2]\n",
        "p.scale:4:6: error: 'a_0' is a knot of depth profile 'a'",
    ),
}


@pytest.mark.parametrize("case", list(GOLDEN))
def test_profile_misuse_is_one_located_error(case, tmp_path):
    src, expected = GOLDEN[case]
    path = tmp_path / "p.scale"
    path.write_text(src)
    with pytest.raises(RuleError) as info:
        scalec.load(str(path))
    text = str(info.value).replace(str(tmp_path) + "/", "")
    assert text.startswith(expected), text
    assert "\n    " in text and "^" in text  # the source line and a caret
