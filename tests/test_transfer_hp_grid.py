"""`--hp` specs: parsing, grids, random samples, one-line errors for bad names and out-of-domain values."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from scalec.compiler.domain import Domain
from scalec.errors import ScalecError
from scalec.parsing import parse_number
from scalec.runtime.studies.hp_grid import (
    HPSpecError,
    grid_points,
    parse_hp_spec,
    random_points,
    resolve_specs,
)


@dataclass(frozen=True)
class Spec:
    name: str
    default: float
    low: float
    high: float
    scale: str = "log"
    domain: Domain = Domain("x")  # what a compiled module derives from the rules (compiler/hp_domains.py)


POSITIVE = {"low": 0, "low_strict": True}
SPACE = {
    "eta": Spec("eta", 2**-7, 2**-14, 2**-2, domain=Domain("eta", **POSITIVE)),
    "beta1": Spec("beta1", 0.9, 0.5, 0.99, "linear", Domain("beta1", low=0, high=1, high_strict=True)),
    "lambda": Spec("lambda", 0.1, 1e-4, 1.0, domain=Domain("lambda", low=0)),
    "lr[mlp.down]": Spec("lr[mlp.down]", 1.0, 1 / 16, 16, domain=Domain("lr[mlp.down]", **POSITIVE)),
}


def test_numbers_accept_powers_fractions_and_exponents():
    assert parse_number("2^-7") == 2**-7
    assert parse_number("1e-3") == 1e-3
    assert parse_number("3/4") == 0.75
    assert parse_number("0.5*2^-3") == 2**-4
    with pytest.raises(ValueError):
        parse_number("__import__('os')")


def test_log_range_with_count_is_a_power_of_two_grid():
    (spec,) = resolve_specs([parse_hp_spec("lr=2^-12..2^-4:5")], SPACE)
    assert spec.name == "eta"  # lr is an alias of eta
    assert spec.grid() == tuple(2.0**k for k in (-12, -10, -8, -6, -4))


def test_linear_hp_range_is_linearly_spaced():
    (spec,) = resolve_specs([parse_hp_spec("beta1=0.8..0.95:4")], SPACE)
    assert [round(x, 6) for x in spec.grid()] == [0.8, 0.85, 0.9, 0.95]


def test_grid_is_cartesian_product_of_specs():
    specs = resolve_specs([parse_hp_spec("eta=0.001,0.01"), parse_hp_spec("lr[mlp.down]=0.5..2:3")], SPACE)
    points = grid_points(specs)
    assert len(points) == 6
    assert {p["eta"] for p in points} == {0.001, 0.01}
    assert sorted({round(p["lr[mlp.down]"], 9) for p in points}) == [0.5, 1.0, 2.0]


def test_random_points_stay_in_range_and_are_reproducible():
    specs = resolve_specs([parse_hp_spec("eta=2^-12..2^-4"), parse_hp_spec("beta1=0.8,0.9")], SPACE)
    a, b = random_points(specs, 20, seed=3), random_points(specs, 20, seed=3)
    assert a == b
    assert all(2**-12 <= p["eta"] <= 2**-4 and p["beta1"] in (0.8, 0.9) for p in a)
    # log-uniform: about half the samples below the geometric midpoint 2^-8
    assert 4 <= sum(p["eta"] < 2**-8 for p in a) <= 16


def test_range_without_count_is_refused_for_a_grid():
    (spec,) = resolve_specs([parse_hp_spec("eta=2^-12..2^-4")], SPACE)
    with pytest.raises(HPSpecError, match="point count"):
        spec.grid()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("etta=0.01", "did you mean eta"),
        ("beta1=0.9..1.2:4", r"beta1 must satisfy 0 <= beta1 < 1; got 1.2"),
        ("eta=-0.001", r"eta must satisfy eta > 0; got -0.001"),
        ("lr[mlp.down]=0", r"lr\[mlp.down\] must satisfy lr\[mlp.down\] > 0"),
        ("eta", "expected NAME=VALUES"),
        ("eta=2^-3..2^-1:x", "bad grid suffix"),
        ("eta=abc", "not a number"),
    ],
)
def test_bad_hp_specs_give_one_line_errors(text, message):
    with pytest.raises(ScalecError, match=message) as info:
        resolve_specs([parse_hp_spec(text)], SPACE, "CompleteDP")
    assert "\n" not in str(info.value) and str(info.value).startswith("error: ")


def test_same_hp_twice_is_an_error():
    with pytest.raises(HPSpecError, match="given twice"):
        resolve_specs([parse_hp_spec("lr=0.1"), parse_hp_spec("eta=0.2")], SPACE)


def test_unknown_name_lists_globals_and_module_kinds():
    with pytest.raises(HPSpecError) as info:
        resolve_specs([parse_hp_spec("zeta=1")], SPACE, "CompleteDP")
    assert "beta1, eta, lambda" in str(info.value) and "lr[<role>]" in str(info.value)
