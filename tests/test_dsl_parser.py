"""Parser, formatter and error messages of the rule language."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scalec.compiler.loader import bundled_rules
from scalec.dsl import ast
from scalec.dsl.errors import RuleError
from scalec.dsl.formatter import format_file
from scalec.dsl.parser import parse, parse_file


@pytest.mark.parametrize("path", list(bundled_rules().values()), ids=lambda p: p.stem)
def test_bundled_files_are_formatted_canonically(path):
    f = parse_file(path)
    assert format_file(f) == f.source


def test_formatter_keeps_comments_and_reparses_to_same_ast():
    src = (
        '# top\nparameterisation X extends SP  # head\n  "doc"\n\n  # about eta\n'
        "  hp eta = 2^-8 in [2^-10, 1] log  # lr\n  role hidden: lr *= m_N^-1; 1-beta1 *= m_B/m_D\n"
    )
    f = parse(src, "x.scale")
    out = format_file(f)
    assert "# top" in out and "# head" in out and "# about eta" in out and "# lr" in out
    assert parse(out) == f
    assert format_file(parse(out)) == out


def test_formatter_keeps_comment_blocks_that_end_in_a_blank_line():
    # The old formatter folded such a block into the statement above it and dropped it.
    src = (
        'parameterisation X extends CompleteP\n  "doc"\n\n  # block one\n  # block one, line 2\n\n'
        "  role embed: eps *= m_N^-1\n  # block two\n\n  role *:\n    lr *= 2;\n    # inside\n    eps *= 3\n"
    )
    out = format_file(parse(src, "x.scale"))
    for note in ("# block one", "# block one, line 2", "# block two", "# inside"):
        assert note in out
    assert parse(out) == parse(src)
    assert format_file(parse(out)) == out


# ---- hypothesis: generated ASTs round-trip through the formatter ---------------------------------
names = st.sampled_from(["eta", "sigma", "alpha", "m_N", "m_L", "m_B", "m_D", "x1"])
numbers = st.sampled_from(["0", "1", "2", "0.5", "1e-8", "3.25", "10"])
exprs = st.recursive(
    st.one_of(names.map(ast.Name), numbers.map(ast.Num)),
    lambda inner: st.one_of(
        st.tuples(st.sampled_from("+-*/^"), inner, inner).map(lambda t: ast.BinOp(t[0], t[1], t[2])),
        inner.map(ast.Neg),
        st.tuples(st.sampled_from(["sqrt"]), inner).map(lambda t: ast.Call(t[0], (t[1],))),
        st.tuples(st.sampled_from(["min", "max"]), inner, inner).map(lambda t: ast.Call(t[0], (t[1], t[2]))),
    ),
    max_leaves=8,
)
targets = st.sampled_from(
    [ast.Target("lr"), ast.Target("eps"), ast.Target("init_var"), ast.Target("beta1", True), ast.Target("weight_decay")]
)
patterns = st.sampled_from(["*", "hidden", "attn.*", "attn.q", "unembed", "norm"]).map(ast.Pattern)
statements = st.one_of(
    st.tuples(names, exprs).map(lambda t: ast.LetDecl(t[0], t[1])),
    st.tuples(names, exprs, st.one_of(st.none(), st.tuples(exprs, exprs).map(lambda r: ast.Range(*r)))).map(
        lambda t: ast.ParamDecl(*t)
    ),
    st.tuples(
        st.lists(patterns, min_size=1, max_size=3),
        st.lists(st.tuples(targets, st.sampled_from(["=", "*="]), exprs), min_size=1, max_size=4),
    ).map(lambda t: ast.RoleRule(tuple(t[0]), tuple(ast.Assignment(*a) for a in t[1]))),
    st.tuples(
        st.lists(st.sampled_from(["residual.attn", "output.mult"]).map(ast.Pattern), min_size=1, max_size=2),
        st.sampled_from(["=", "*="]),
        exprs,
    ).map(lambda t: ast.SiteRule(tuple(t[0]), t[1], t[2])),
    st.text(alphabet="abc ()-.,:", max_size=20).map(ast.Docstring),
)


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(statements, max_size=6), st.one_of(st.none(), st.just("SP")))
def test_formatter_round_trip_on_generated_asts(stmts, parent):
    f = ast.RuleFile("Gen", parent, tuple(stmts))
    text = format_file(f)
    again = parse(text, "gen.scale")
    assert again == f
    assert format_file(again) == text


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_parser_raises_only_rule_errors_on_arbitrary_text(text):
    try:
        parse(text, "fuzz.scale")
    except RuleError:
        pass


@pytest.mark.slow
@settings(max_examples=200, deadline=None)
@given(st.text(alphabet='parmetisonxd SProlehidn:=*^-+/()[],.;0123456789#"\n\t_', max_size=120))
def test_parser_raises_only_rule_errors_on_near_miss_text(text):
    try:
        parse("parameterisation X\n" + text, "fuzz.scale")
    except RuleError as exc:
        assert exc.headline.startswith("fuzz.scale:")


# ---- golden error messages --------------------------------------------------------------------------
GOLDEN = {
    "parameterisation X\n  role hidden: lr ** 2\n": (
        "bad.scale:2:19: error: unexpected '*'\n"
        "      role hidden: lr ** 2\n"
        "                      ^\n"
        "hint: expected '=' or '*='"
    ),
    "parameterisation X\n  rol hidden: lr = 2\n": (
        "bad.scale:2:3: error: unexpected 'rol'\n"
        "      rol hidden: lr = 2\n"
        "      ^^^\n"
        "hint: did you mean 'role'? (expected 'axis', 'cite', 'expect', 'extends', 'group', 'hp', 'let', 'new', ...)"
    ),
    "parameterisation X\n  hp a = 1 in [1, 2] lgo\n": (
        "bad.scale:2:22: error: unexpected 'lgo'\n"
        "      hp a = 1 in [1, 2] lgo\n"
        "                         ^^^\n"
        "hint: did you mean 'log'? (expected 'axis', 'cite', 'expect', 'group', 'hp', 'knots', 'let', 'log' or "
        "'linear', ...)"
    ),
    "parameterisation X\n  let y = (2\n": (
        "bad.scale:2:13: error: unexpected end of file\n      let y = (2\n                ^\nhint: expected ')'"
    ),
}


@pytest.mark.parametrize("src", list(GOLDEN), ids=range(len(GOLDEN)))
def test_golden_syntax_error_messages(src):
    with pytest.raises(RuleError) as info:
        parse(src, "bad.scale")
    assert str(info.value) == GOLDEN[src]
