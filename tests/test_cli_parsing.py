"""scalec.parsing: one bounded number syntax and one NAME=VALUE rule for every command and the Python API."""

from __future__ import annotations

import math
import re
import time
from fractions import Fraction

import pytest

import scalec
from scalec.errors import ScalecError
from scalec.parsing import (
    ArgumentValueError,
    evaluate,
    parse_base,
    parse_exact,
    parse_int,
    parse_ints,
    parse_number,
    parse_params,
    parse_shape,
    split_assignments,
)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("2^14", 16384),
        ("16M", 16_000_000),
        ("1e6", 1_000_000),
        ("1.5G", 1_500_000_000),
        ("2k", 2000),
        ("3/4", 0.75),
        ("2^-7", 1 / 128),
        ("0.5*2^-3", 1 / 16),
        ("-(2^3)", -8),
        ("2**10", 1024),
        ("1_000", 1000),
    ],
)
def test_numbers_are_read_the_same_way_everywhere(text, value):
    assert parse_number(text) == value


def test_values_are_exact_rationals_until_a_fractional_power():
    assert evaluate("0.1") == Fraction(1, 10) and evaluate("2^-1") == Fraction(1, 2)
    assert parse_exact("2^-1") == Fraction(1, 2)
    assert parse_number("2^0.5") == pytest.approx(math.sqrt(2))
    with pytest.raises(ArgumentValueError, match="not an exact rational"):
        parse_exact("2^0.5", "--param alpha")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("9^9^9", "exponent 387420489, beyond the bound of 1024"),
        ("2^(2^100)", "beyond the bound of 1024"),
        ("2^4M", "beyond the bound of 1024"),
        ("1e999999999999", "too large"),
        ("10^400", "too large"),
        ("2^1000", "too large (magnitude at most 2^128)"),
        ("2^129", "too large"),
        ("1e-400", "too small"),
        ("(-2)^0.5", "negative number to a fractional power"),
        ("1/0", "divides by zero"),
        ("0^-1", "divides by zero"),
        ("nan", "not a number"),
        ("inf", "not a number"),
        ("__import__('os').system('true')", "not a number"),
        ("1 if 1 else 2", "not a number"),
        ("9" * 101, "longer than 100 characters"),
        ("", "empty"),
    ],
)
def test_hostile_numbers_are_refused_instantly_in_one_line(text, reason):
    start = time.process_time()
    with pytest.raises(ArgumentValueError, match=re.escape(reason)) as info:
        parse_number(text, "--hp eta")
    assert time.process_time() - start < 0.5
    message = str(info.value)
    assert message.startswith("error: --hp eta ") and "\n" not in message


def test_floats_from_python_are_checked_too():
    for bad in (math.nan, math.inf, -math.inf, True, None, [1]):
        with pytest.raises(ArgumentValueError):
            parse_number(bad, "axis n")
    assert parse_number(2.5) == 2.5 and parse_number(7) == 7


def test_whole_numbers_where_counts_are_required():
    assert parse_int("1.5G", "--batch") == 1_500_000_000 and parse_int("2^16", "--batch") == 65536
    with pytest.raises(ArgumentValueError, match=r"--base n '100.5' is not a whole number"):
        parse_int("100.5", "--base n")
    with pytest.raises(ArgumentValueError, match="must be at least 1"):
        parse_int("-1", "--steps")
    assert parse_int("0", "--seed", minimum=0) == 0
    assert parse_ints("64,2^7,256", "--widths", at_least=2) == (64, 128, 256)
    with pytest.raises(ArgumentValueError, match="at least 2"):
        parse_ints("64", "--widths", at_least=2)


def test_one_comma_rule_for_every_name_value_option():
    assert split_assignments(["eta=0.001,0.01,beta1=0.9", "lr[mlp.down]=2"], "--hp") == [
        ("eta", "0.001,0.01"),
        ("beta1", "0.9"),
        ("lr[mlp.down]", "2"),
    ]
    assert parse_base(["n=2^8,L=4"]) == {"n": 256, "L": 4}
    assert parse_shape("n=64,B=2^12", "--base-shape") == {"width": 64, "batch": 4096}
    with pytest.raises(ArgumentValueError, match="'eta' is not NAME=VALUE"):
        split_assignments(["eta"], "--hp")
    with pytest.raises(ArgumentValueError, match="given twice"):
        split_assignments(["eta=1", "eta=2"], "--hp")


def test_params_are_exact_whatever_the_spelling():
    assert (
        parse_params(["alpha=2^-1"]) == parse_params(["alpha=1/2"]) == parse_params(["alpha=0.5"]) == {"alpha": "1/2"}
    )


# ---- the Python API validates exactly as the CLI does ------------------------------------------------------


def test_api_shape_refuses_nan_and_non_numbers_and_reads_number_text():
    p = scalec.load("mup")
    for bad in (math.nan, -1, "lots"):
        with pytest.raises(ScalecError) as info:
            p.shape(n=bad)
        assert isinstance(info.value, ValueError) and "\n" not in str(info.value)
    assert p.shape(n="2^9", B="16k").n == 512
    with pytest.raises(ValueError, match="axis L=100000 is outside"):
        p.shape(L=100_000)


@pytest.mark.slow
def test_api_base_and_params_take_number_text_and_refuse_fractions_of_a_width():
    assert scalec.load("mup", base={"n": "2^8"}).module.BASE.n == 256
    with pytest.raises(ScalecError, match="not a whole number"):
        scalec.load("mup", base={"n": 100.5})
    assert scalec.load("completep", params={"alpha": "2^-1"}).module.PARAMS["alpha"] == 0.5


def test_api_hparams_check_each_domain_once_for_everyone():
    from scalec.runtime.plan.planner import PlanError, make_plan
    from scalec.runtime.trainer.gpt import GPT, GPTConfig

    p = scalec.load("mup")
    assert p.hparams(eta="2^-7").eta == 2**-7
    for name, bad in (("eta", -1.0), ("eta", 0.0), ("beta1", 1.0), ("lr[mlp.down]", 0.0), ("eta", math.nan)):
        with pytest.raises(ScalecError, match=re.escape(name)):
            p.hparams(**{name: bad})
    model = GPT(GPTConfig(width=32, depth=1, head_dim=16, vocab=256, seq_len=16))
    with pytest.raises(PlanError, match=r"eta must satisfy eta > 0; got 0"):
        make_plan(p, model, {"n": 32, "d_head": 16}, hp={"eta": 0.0})
