"""Bad rule files: one clear located error each, never a traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

import scalec
from scalec.dsl.errors import RuleError

CASES = {
    "unknown_name": (
        "parameterisation A extends SP\n  role hidden: lr *= m_X^-1\n",
        "a.scale:2:22: error: unknown name 'm_X'",
        "did you mean",
    ),
    "unknown_role": (
        "parameterisation A extends SP\n  role hiden: lr *= m_N^-1\n",
        "a.scale:2:8: error: unknown role or group 'hiden'",
        "did you mean 'hidden'?",
    ),
    "unknown_hp_kind": (
        "parameterisation A extends SP\n  role hidden: lrr *= m_N^-1\n",
        "a.scale:2:16: error: unknown hyperparameter 'lrr'",
        "did you mean 'lr'?",
    ),
    "wrong_arity": (
        "parameterisation A extends SP\n  role hidden: lr *= sqrt(m_N, 2)\n",
        "a.scale:2:22: error: sqrt() takes 1 argument, got 2",
        None,
    ),
    "not_identity": (
        "parameterisation A extends SP\n  role hidden: lr *= 2 * m_N^-1\n",
        "error: lr of role 'attn.q' is not the identity at the base shape",
        "m_N = m_L",
    ),
    "irrational_exponent": (
        "parameterisation A extends SP\n  role hidden: lr *= m_N^eta\n",
        "a.scale:2:26: error: exponent is not an exact rational: it depends on eta",
        None,
    ),
    "irrational_exponent2": (
        "parameterisation A extends SP\n  role hidden: lr *= m_N^sqrt(2)\n",
        "error: exponent sqrt(2) is not an exact rational",
        None,
    ),
    "beta_domain": (
        "parameterisation A extends SP\n  role *: 1-beta1 *= 2 - m_B\n",
        "error: beta1 of role 'embed' leaves its domain (0 <= beta1 < 1): beta1 = 1 at B = 2^13 (m_B = 2)",
        "a zero, pole or sign change inside the axis box",
    ),
    "eps_domain": (
        "parameterisation A extends SP\n  role *: eps *= m_N - 1\n",
        "not the identity at the base shape",
        None,
    ),
    "eps_negative": (
        "parameterisation A extends SP\n  role *: eps *= 2 - m_N\n",
        "error: eps of role 'embed' leaves its domain (eps > 0): eps = 0 at n = 256 (m_N = 2)",
        None,
    ),
    "duplicate_hp": (
        "parameterisation A extends SP\n  hp k = 1 in [1, 2]\n  hp k = 1 in [1, 2]\n",
        "a.scale:3:6: error: duplicate definition of hp 'k' (first defined at line 2)",
        None,
    ),
    "duplicate_rule": (
        "parameterisation A extends SP\n  role attn.q: lr = eta\n  role attn.q: lr = eta\n",
        "a.scale:3:16: error: duplicate definition of lr for role 'attn.q'",
        None,
    ),
    "missing_parent": (
        "parameterisation A extends muQ\n",
        "a.scale:1:28: error: cannot find parent parameterisation 'muQ'",
        "did you mean",
    ),
    "times_nothing": ("parameterisation A\n  role *: lr *= 2\n", "has nothing to multiply", None),
    "bad_axis": ("parameterisation A extends SP\n  axis width = 3\n", "error: unknown axis 'width'", None),
    "range": ("parameterisation A extends SP\n  hp k = 5 in [1, 2]\n", "default 5 of hp k lies outside", None),
    "reserved": ("parameterisation A extends SP\n  hp m_N = 1\n", "'m_N' is a reserved name", None),
    "division": ("parameterisation A extends SP\n  let z = 1/0\n", "division by zero", None),
    "did_you_mean_case": (
        "parameterisation A extends SP\n  role hidden: lr *= m_n^-1\n",
        "unknown name 'm_n'",
        "'m_N'",
    ),
    "site_uses_hp": (
        "parameterisation A extends SP\n  site output.mult = 256 * eta\n",
        "a.scale:2:22: error: forward site multipliers depend on the shape only",
        "mult[ROLE]",
    ),
}
P = "parameterisation A extends SP\n"
# Names the generated module uses itself, Python internals, and a keyword's mangled twin (issue 14).
for _name in ("field", "get", "replace", "multipliers", "self", "dict"):
    CASES[f"name_{_name}"] = (f"{P}  hp {_name} = 1 in [1, 2]\n", f"a.scale:2:6: error: '{_name}' is reserved", None)
for _name in ("__init__", "__class__", "__dict__", "__slots__", "__annotations__", "__eta"):
    CASES[f"name_{_name}"] = (f"{P}  hp {_name} = 1 in [1, 2]\n", "a.scale:2:6: error: names starting with '_'", None)
CASES["name_mangled_twin"] = (f"{P}  hp lambda_ = 1 in [1, 2]\n", "share the Python name 'lambda_'", None)
# Numbers: every case one located error, long before sympy would hang or overflow (README "Limits").
CASES.update(
    {
        "hp_10_400": (f"{P}  hp z = 10^400\n", "a.scale:2:10: error: default of hp z must be a number: power", None),
        "axis_10_400": (f"{P}  axis L = 2 in [1, 10^400]\n", "a.scale:2:21: error: axis L upper bound", None),
        "literal_4301": (f"{P}  let s = {'1' * 4301}\n", "a.scale:2:11: error: number literal", None),
        "literal_exp": (f"{P}  let x = 1e999999999999\n", "a.scale:2:11: error: number literal", "+-400"),
        "pow_2_2_20": (f"{P}  role hidden: lr *= 2^(2^20)\n", "a.scale:2:25: error: exponent 1048576 is out of", None),
        "tower": (f"{P}  site attn.scale = d_head^-2^2^2^2^2\n", "error: exponent 65536 is out of range", None),
        "pow_2_2_100": (f"{P}  let x = 2^(2^100)\n", "a.scale:2:14: error: exponent", None),
        "half_huge": (f"{P}  site attn.scale = d_head0^(99999999999999999999999999/2)\n", "out of range", None),
        "sum_500": (f"{P}  let s = {' + '.join(['1'] * 500)}\n", "nested deeper than 100 levels", None),
        "lets_20k": (P + "".join(f"  let v{i} = {i}\n" for i in range(20000)), "error: rule file has", "extends"),
        "let_growth": (
            P + "  let a0 = m_N\n" + "".join(f"  let a{i} = a{i - 1} * a{i - 1}\n" for i in range(1, 40)),
            "a.scale:13:13: error: let a11 has an exponent beyond +-1024",
            None,
        ),
    }
)


@pytest.mark.parametrize("case", list(CASES))
def test_bad_rule_file_gives_one_located_error(case, write_rule):
    text, headline, hint = CASES[case]
    path = write_rule("a", text)
    with pytest.raises(RuleError) as info:
        scalec.load(path)
    msg = str(info.value)
    first = msg.splitlines()[0]
    assert headline in (first if headline.startswith("a.scale") is False else first.replace(str(path), "a.scale"))
    if hint:
        assert hint in msg


def test_cyclic_extends_is_an_error(write_rule):
    write_rule("a", "parameterisation A extends B\n")
    b = write_rule("b", "parameterisation B extends A\n")
    with pytest.raises(RuleError, match="cyclic 'extends': B -> A -> B"):
        scalec.load(b)


def test_unknown_bundled_name_suggests():
    with pytest.raises(RuleError, match="did you mean 'completep'"):
        scalec.load("completp")


def test_param_override_outside_range():
    with pytest.raises(RuleError, match="alpha=2 lies outside"):
        scalec.load("completep", params={"alpha": "2"})


@pytest.mark.slow
def test_cli_check_exit_codes(write_rule):
    bad = write_rule("a", "parameterisation A extends SP\n  role hidden: lr *= m_N^eta\n")
    ok = subprocess.run(
        [sys.executable, "-m", "scalec.cli", "check", "sp", "completedp"], capture_output=True, text=True
    )
    assert ok.returncode == 0, ok.stderr
    res = subprocess.run([sys.executable, "-m", "scalec.cli", "check", str(bad)], capture_output=True, text=True)
    assert res.returncode == 1
    assert "Traceback" not in res.stderr
    assert "error: exponent is not an exact rational" in res.stderr and "^" in res.stderr


@pytest.mark.slow
def test_cli_fmt_check_and_show(write_rule):
    messy = write_rule("m", "parameterisation M extends SP\n   role hidden:lr*=m_N^-1\n")
    res = subprocess.run(
        [sys.executable, "-m", "scalec.cli", "fmt", "--check", str(messy)], capture_output=True, text=True
    )
    assert res.returncode == 1 and "would reformat" in res.stdout
    subprocess.run([sys.executable, "-m", "scalec.cli", "fmt", str(messy)], check=True, capture_output=True)
    assert messy.read_text() == "parameterisation M extends SP\n  role hidden: lr *= m_N^-1\n"
    show = subprocess.run(
        [sys.executable, "-m", "scalec.cli", "show", "completedp", "--width", "512", "--depth", "8"],
        capture_output=True,
        text=True,
        env={"COLUMNS": "200", "PATH": ""},
    )
    assert show.returncode == 0, show.stderr
    assert "alpha - 1" in show.stdout and "residual.attn" in show.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "scalec.cli", "show", "completedp", "--batch", "1e9"], capture_output=True, text=True
    )
    assert bad.returncode == 1 and "axis B" in bad.stderr and "Traceback" not in bad.stderr
