"""Generated modules: agree with sympy, deterministic, stdlib-only, injection-proof."""

from __future__ import annotations

import ast
import functools
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import mpmath
import pytest
import sympy
from hypothesis import given, settings
from hypothesis import strategies as st

import scalec
from scalec.compiler.codegen import generate
from scalec.compiler.parameterisation import compile_ir
from scalec.compiler.symbols import BASE, RATIO, hp_symbol, param_symbol
from scalec.compiler.vocabulary import DEFAULT_FANS, ROLES
from tests.conftest import BUNDLED

KINDS = ("init_mean", "init_std", "lr", "weight_decay", "beta1", "beta2", "eps", "mult")


@functools.cache
def _evaluator(p, expr):
    """Evaluate the IR expression with mpmath at 50 digits (independent of the generated code path)."""
    fixed = {BASE[a]: p.ir.axes[a].value for a in BASE}
    fixed.update({param_symbol(k): q.value for k, q in p.ir.params.items()})
    args = [RATIO[a] for a in RATIO] + [hp_symbol(k, q.low) for k, q in p.ir.hps.items()]
    return sympy.lambdify(args, expr.subs(fixed), modules="mpmath")


def _sympy_value(p, expr, shape, hp):
    ratios = [mpmath.mpf(getattr(shape, a)) / mpmath.mpf(float(p.ir.axes[a].value)) for a in RATIO]
    hps = [mpmath.mpf(hp.get(k)) for k in p.ir.hps]
    with mpmath.workdps(50):
        return float(_evaluator(p, expr)(*ratios, *hps))


log2 = st.floats(min_value=-2, max_value=3)


@pytest.mark.slow
@settings(max_examples=40, deadline=None)
@given(st.sampled_from(BUNDLED), log2, log2, st.floats(-1, 1), st.floats(0, 3), st.floats(-1, 1), st.floats(-3, 3))
def test_generated_module_agrees_with_sympy_on_random_shapes(name, ln, ll, lb, ld, lh, leta):
    p = scalec.load(name)
    base = p.module.BASE
    shape = p.module.Shape(
        n=base.n * 2**ln, L=base.L * 2**ll, B=base.B * 2**lb, D=base.D * 2**ld, d_head=base.d_head * 2**lh
    )
    hp = p.hparams(eta=2.0**-8 * 2**leta)
    for role in p.module.ROLES:
        got = _rule_values(p, role, shape, hp)  # the printed formulas, also where role_hparams would refuse
        for kind in KINDS:
            want = _sympy_value(p, p.ir.roles[role][kind].expr, shape, hp)
            assert getattr(got, kind) == pytest.approx(want, rel=1e-9, abs=1e-300), (name, role, kind)
    sites = p.module._sites(shape).as_dict()
    for site, rule in p.ir.sites.items():
        assert sites[site] == pytest.approx(_sympy_value(p, rule.expr, shape, hp), rel=1e-9)


def _rule_values(p, role, shape, hp):
    """A role's rule function itself, at the bundled GPT's fans (role_hparams adds the region and domain checks)."""
    (c_in, e_in), (c_out, e_out) = DEFAULT_FANS[role]
    return p.module._ROLE_RULES[role](shape, hp, fan_in=c_in * shape.n**e_in, fan_out=c_out * shape.n**e_out, layer=0)


@pytest.mark.slow
def test_codegen_is_byte_identical_across_hash_seeds():
    """Set and dict orders that depend on PYTHONHASHSEED must not reach the output."""
    probe = (
        "import hashlib; from scalec.compiler.codegen import generate; from scalec.compiler.parameterisation import "
        f"compile_ir; print(*(hashlib.sha256(generate(compile_ir(n)[0]).encode()).hexdigest() for n in {BUNDLED!r}))"
    )
    outs = set()
    for seed in ("0", "1", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        res = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=300)
        assert res.returncode == 0, res.stderr
        outs.add(res.stdout)
    assert len(outs) == 1


@pytest.mark.slow
@pytest.mark.parametrize("name", BUNDLED)
def test_generated_module_is_ruff_formatted(name, tmp_path):
    out = tmp_path / f"{name}.py"
    out.write_text(generate(compile_ir(name)[0]))
    res = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--isolated", "--line-length", "120", "--check", "--diff", str(out)],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stdout + res.stderr


def _functions(src: str) -> dict[str, ast.FunctionDef]:
    return {n.name: n for n in ast.walk(ast.parse(src)) if isinstance(n, ast.FunctionDef)}


def test_one_function_per_distinct_rule_body_and_a_role_table():
    p = scalec.load("completedp")
    helpers = {"__init__", "_require", "_axis_text", "_bound", "_shape_text", "_sites"}  # checks and messages
    bodies = {f for f in _functions(p.source) if f.startswith("_") and f not in helpers}
    # Complete(d)P: embed, the seven hidden matrices, norm, qk_norm, bias, final_norm, unembed.
    assert len(bodies) == 7 and "_hidden" in bodies
    table = p.module._ROLE_RULES
    assert set(table) == set(p.module.ROLES) and len(set(table.values())) == 7
    assert {table[r].__name__ for r in ("attn.q", "attn.o", "mlp.up", "mlp.down")} == {"_hidden"}
    assert list(p.module.ROLES.items()) == list(ROLES.items())  # runs of one width class written as dict.fromkeys
    # Issue 13: under 450 lines by organisation (one citation comment per value, the rule text once in a table);
    # issue 23 added ~130 lines of guards (the Domain type, every value's and every HP's domain, their checks).
    assert len(p.source.splitlines()) < 600


@pytest.mark.slow
@pytest.mark.parametrize("name", BUNDLED)
def test_every_function_argument_is_used(name):
    src = generate(compile_ir(name)[0])
    for fn in _functions(src).values():
        used = {n.id for n in ast.walk(fn) if isinstance(n, ast.Name)}
        args = [a.arg for a in fn.args.args + fn.args.kwonlyargs if a.arg != "self"]
        assert all(a in used for a in args), (name, fn.name, args)


def test_constants_print_as_float_literals_and_sums_read_as_written():
    src = scalec.load("completedp").source
    assert "init_mean=0.0," in src and "mult=1.0," in src and "init_std=0.0," in src
    assert "beta1=1 - (1 - hp.beta1) * m_B / m_D," in src
    assert "=0," not in src and "=1," not in src


def test_params_are_read_only_in_the_generated_module():
    p = scalec.load("completep", params={"alpha": "1/2"})
    assert p.module.PARAMS["alpha"] == 0.5
    with pytest.raises(TypeError):
        p.module.PARAMS["alpha"] = 1.0
    assert p.module.sites(p.shape(L=8)).residual_attn == pytest.approx(0.5)


def _citations(lines: list[str], start: int, end: int, name: str) -> set[str]:
    """The `file:line` references of the value `name=` between lines start..end: trailing or on the line above."""
    at = next(i for i in range(start, end) if lines[i].strip().startswith(f"{name}="))
    text = lines[at].partition("  # ")[2] or (lines[at - 1].strip()[2:] if lines[at - 1].strip()[:2] == "# " else "")
    return set(re.findall(r"[\w.]+:\d+", text))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["completedp", "muon", "umup"])
def test_every_value_cites_its_rule_lines_and_the_table_quotes_them(name):
    p = scalec.load(name)
    lines = p.source.splitlines()
    table = dict(re.findall(r"^#   ([\w.]+:\d+) +(.*)$", p.source, re.MULTILINE))
    functions = _functions(p.source)
    for role, rules in p.ir.roles.items():
        fn = functions[p.module._ROLE_RULES[role].__name__]
        for kind, rule in rules.items():
            refs = {f"{Path(o.path).name}:{o.line}": o.text for o in rule.origins}
            assert _citations(lines, fn.lineno, fn.end_lineno, kind) == set(refs), (role, kind)
            for ref, text in refs.items():  # the statement, in the table row of its line (`role X:` written once)
                head, _, statement = text.rpartition(": ")
                assert table[ref].startswith(head) and statement in table[ref], (ref, text)
    sites = functions["_sites"]  # the rules; `sites` checks them
    for site, rule in p.ir.sites.items():
        want = {f"{Path(o.path).name}:{o.line}" for o in rule.origins}
        assert _citations(lines, sites.lineno, sites.end_lineno, site.replace(".", "_")) == want, site


@pytest.mark.slow
def test_generated_module_imports_without_sympy_or_lark(tmp_path):
    out = tmp_path / "cdp.py"
    subprocess.run(
        [sys.executable, "-m", "scalec.cli", "compile", "completedp", "-o", str(out)], check=True, capture_output=True
    )
    probe = textwrap.dedent(f"""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split('.')[0] in ('sympy', 'lark', 'jinja2', 'scalec', 'torch', 'numpy'):
                    raise ImportError('blocked ' + name)
        sys.meta_path.insert(0, Block())
        sys.path.insert(0, {str(tmp_path)!r})
        import cdp
        s = cdp.Shape(n=256, L=4, B=4096, D=2**23, d_head=32)
        print(cdp.role_hparams('mlp.down', s).lr, cdp.sites(s).residual_mlp, cdp.steps(s))
    """)
    res = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    lr, res_mult, steps = res.stdout.split()
    assert float(res_mult) == pytest.approx(0.5) and int(steps) == 2048


def test_hparams_by_name_and_module_multipliers():
    p = scalec.load("mup")
    hp = p.hparams(eta=0.01, **{"lr[mlp.down]": 2.0, "lambda": 0.2})
    assert hp.get("lambda") == 0.2 and hp.get("lr[mlp.down]") == 2.0 and hp.get("lr[mlp.up]") == 1.0
    shape = p.shape(n=256)
    assert p.role_hparams("mlp.down", shape, hp).lr == pytest.approx(2 * p.role_hparams("mlp.up", shape, hp).lr)
    with pytest.raises(KeyError):
        p.hparams(nope=1.0)


def test_shape_outside_declared_range_names_the_axis():
    p = scalec.load("completedp")
    with pytest.raises(ValueError, match="axis B=1e"):
        p.module.check_shape(p.shape(B=1e9))


@pytest.mark.slow
def test_rule_text_cannot_inject_code(write_rule, tmp_path):
    marker = tmp_path / "pwned"
    payload = f"open('{marker}', 'w')"
    q3 = "'" * 3
    text = (
        "parameterisation Evil extends SP\n"
        f'  "doc \\N{{ \\ {q3} {payload} {q3} \\"\n'
        f'  cite "\\x00 {payload}"\n'
        "  hp lambda_x = 1 in [1, 2]\n"
        f"  role hidden: lr *= m_N^-1  # {payload}\n"
    )
    path = write_rule("evil", text)
    src = scalec.load(path).source
    ns: dict = {}
    exec(compile(src, "evil", "exec"), ns)
    assert not marker.exists()
    assert ns["HParams"]().get("lambda_x") == 1.0 and ns["HParams"]().get("lambda") == pytest.approx(0.1)
