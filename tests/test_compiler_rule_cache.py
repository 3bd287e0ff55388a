"""The compiled-rule cache on disk: keyed by the whole `extends` chain, rebuilt when corrupt or tampered with, light
on a hit, and identical in what it answers to a full compile."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from scalec.compiler import rule_cache
from scalec.compiler.loader import chain_files, read_header
from scalec.compiler.parameterisation import rule_summary
from scalec.dsl.errors import RuleError
from tests.conftest import BUNDLED

PARENT = 'parameterisation Parent extends SP\n  "a parent"\n  role hidden: lr *= m_N^-1\n'
CHILD = "parameterisation Child extends Parent\n  role hidden: init_var *= m_N^-1\n"


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("SCALEC_CACHE", str(folder))
    monkeypatch.setattr(rule_cache, "_warned", set())
    return folder / "rules"


def _entries(cache: Path) -> list[Path]:
    return sorted(cache.glob("*.json")) if cache.is_dir() else []


def test_second_load_is_a_hit_with_the_same_summary(cache, write_rule):
    write_rule("parent", PARENT)
    child = write_rule("child", CHILD)
    miss, compiled = rule_summary(child)
    assert compiled is not None and len(_entries(cache)) == 1
    hit, compiled_again = rule_summary(child)
    assert compiled_again is None  # nothing was compiled: the entry answered
    assert hit == miss and hit.lineage == ("SP", "Parent", "Child")


def test_editing_an_ancestor_invalidates_the_entry(cache, write_rule):
    parent = write_rule("parent", PARENT)
    child = write_rule("child", CHILD)
    before, _ = rule_summary(child)
    parent.write_text(PARENT.replace("lr *= m_N^-1", "lr *= m_N^(-1/2)"))
    after, compiled = rule_summary(child)
    assert compiled is not None  # the edit missed
    assert before.exponent("mlp.up", "lr")["n"] == "-1" and after.exponent("mlp.up", "lr")["n"] == "-1/2"
    assert len(_entries(cache)) == 2


@pytest.mark.slow
def test_params_and_base_key_separate_entries(cache, tmp_path):
    rule = tmp_path / "k.scale"
    rule.write_text('parameterisation K extends SP\n  "x"\n  param k = 1 in [1/2, 1]\n  role hidden: lr *= m_N^-k\n')
    a, _ = rule_summary(rule)
    b, compiled = rule_summary(rule, {"k": "1/2"})
    c, compiled_base = rule_summary(rule, None, {"n": 512})
    assert compiled is not None and compiled_base is not None
    assert a.source != b.source and a.source != c.source and len(_entries(cache)) == 3  # k and n0 in PARAMS/BASE


def test_a_rule_that_breaks_its_expectations_is_never_cached(cache):
    """CompleteP expects `depth: complete`; at alpha = 1/2 it is not: check exits 1, and nothing is stored."""
    summary, compiled = rule_summary("completep", {"alpha": "1/2"})
    assert summary.broken and compiled is not None
    assert _entries(cache) == [] if cache.exists() else True
    again, compiled_again = rule_summary("completep", {"alpha": "1/2"})
    assert compiled_again is not None  # compiled again, not read back


def _tamper(entry: Path, change) -> None:
    data = json.loads(entry.read_text())
    change(data)
    entry.write_text(json.dumps(data))


@pytest.mark.parametrize(
    "how",
    [
        "garbage",
        "source_edited",
        "source_edited_with_checksum",  # checksum recomputed, but the key it records is not this entry's
        "truncated",
        "not_python",
    ],
)
def test_corrupt_or_tampered_entry_is_rebuilt_never_trusted(cache, how, capsys):
    good, _ = rule_summary("mup")
    (entry,) = _entries(cache)
    if how == "garbage":
        entry.write_bytes(b"\x00\xff not json")
    elif how == "truncated":
        entry.write_text(entry.read_text()[:100])
    elif how == "source_edited":
        _tamper(entry, lambda d: d["rule"].update(source=d["rule"]["source"] + "\nimport os\n"))
    elif how == "source_edited_with_checksum":

        def change(d):
            d["rule"]["source"] += "\nimport os\n"
            d["sha256"] = rule_cache._digest(d["rule"])
            d["key"] = "0" * 64

        _tamper(entry, change)
    elif how == "not_python":

        def change(d):
            d["rule"]["source"] = "def ("
            d["sha256"] = rule_cache._digest(d["rule"])

        _tamper(entry, change)
    again, compiled = rule_summary("mup")
    assert compiled is not None and again == good
    assert "rule cache entry" in capsys.readouterr().err
    third, compiled = rule_summary("mup")  # the rebuilt entry is good again
    assert compiled is None and third == good


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="POSIX permissions")
def test_entry_writable_by_others_is_not_trusted(cache):
    rule_summary("sp")
    (entry,) = _entries(cache)
    entry.chmod(0o666)
    _, compiled = rule_summary("sp")
    assert compiled is not None
    (entry,) = _entries(cache)
    assert entry.stat().st_mode & 0o077 == 0  # rewritten private


def test_unwritable_cache_works_without_it_and_warns_once(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("SCALEC_CACHE", str(blocker))
    monkeypatch.setattr(rule_cache, "_warned", set())
    first, _ = rule_summary("sp")
    second, compiled = rule_summary("sp")
    assert compiled is not None and first == second
    err = capsys.readouterr().err
    assert err.count("warning") == 1 and "cannot write the rule cache" in err


def test_a_rule_that_fails_its_checks_is_never_stored(cache, write_rule):
    ok = write_rule("a", "parameterisation A extends SP\n  role hidden: lr *= m_N^-1\n")
    rule_summary(ok)
    assert len(_entries(cache)) == 1
    ok.write_text("parameterisation A extends SP\n  role hidden: lr *= m_N^eta\n")
    with pytest.raises(RuleError, match="not an exact rational"):
        rule_summary(ok)
    assert len(_entries(cache)) == 1


def test_headers_are_read_exactly_as_the_grammar_reads_them():
    assert read_header("# note\nparameterisation A # c\n  extends # c\n  B\n  role x: lr *= 1\n") == ("A", "B")
    assert read_header("parameterisation A\n  axis n = 256\n") == ("A", None)
    assert read_header("parameterisation A extends\n") is None  # left to the parser to report
    assert read_header("role x: lr *= 1\n") is None


def test_chain_files_find_the_files_the_parser_loads(write_rule):
    write_rule("parent", PARENT)
    child = write_rule("child", CHILD)
    names = [Path(p).name for p, _ in chain_files(child)]
    assert names == ["sp.scale", "parent.scale", "child.scale"]
    write_rule("x", "parameterisation X extends Y\n")
    assert chain_files(child.parent / "x.scale") is None  # a missing parent: the full load reports it


@pytest.mark.slow
@pytest.mark.parametrize("name", BUNDLED)
def test_hit_and_miss_answer_the_same_for_every_bundled_rule(cache, name):
    miss, compiled = rule_summary(name)
    hit, again = rule_summary(name)
    assert compiled is not None and again is None and hit == miss


_PROBE = (
    "import atexit, sys\n"
    "atexit.register(lambda: print('HEAVY', sorted(m for m in ('sympy', 'lark', 'jinja2') if m in sys.modules),"
    " file=sys.stderr))\n"
    "sys.argv = ['scalec'] + sys.argv[1:]\n"
    "from scalec.cli import main\n"
    "main()\n"
)


def _cli(args: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _PROBE, *args], capture_output=True, text=True, env=env)


@pytest.mark.slow
@pytest.mark.parametrize("command", ["check", "show", "compile"])
def test_cli_on_a_hit_imports_no_sympy_lark_jinja2_and_prints_the_same(command, tmp_path):
    env = {**os.environ, "SCALEC_CACHE": str(tmp_path)}
    miss = _cli([command, "completedp"], env)
    hit = _cli([command, "completedp"], env)
    assert miss.returncode == hit.returncode == 0, miss.stderr + hit.stderr
    assert "HEAVY ['jinja2', 'lark', 'sympy']" in miss.stderr
    assert "HEAVY []" in hit.stderr
    assert hit.stdout == miss.stdout and len(hit.stdout) > 200


@pytest.mark.slow
def test_load_on_a_hit_imports_no_sympy_lark_jinja2(tmp_path):
    code = (
        "import sys, scalec\n"
        "p = scalec.load('mup')\n"
        "print(p.module.NAME, sorted(m for m in ('sympy', 'lark', 'jinja2') if m in sys.modules))\n"
    )
    env = {**os.environ, "SCALEC_CACHE": str(tmp_path)}
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env) for _ in range(2)]
    assert [r.stdout.strip() for r in runs] == ["muP ['jinja2', 'lark', 'sympy']", "muP []"], runs[1].stderr


def test_ir_of_a_cached_rule_is_compiled_on_demand_and_must_match_its_module(cache, write_rule):
    from scalec.compiler.parameterisation import _load_cached, load
    from scalec.errors import ScalecError

    path = write_rule("a", "parameterisation A extends SP\n  role hidden: lr *= m_N^-1\n")
    rule_summary(path)  # stored
    _load_cached.cache_clear()
    p = load(path)
    assert p._compiled is None and p.ir.name == "A"  # a hit, compiled when asked
    _load_cached.cache_clear()
    q = load(path)
    path.write_text("parameterisation A extends SP\n  role hidden: lr *= m_N^-2\n")
    with pytest.raises(ScalecError, match="changed on disk"):
        _ = q.ir
