"""Nothing in a rule file or its name runs code: every string reaching the generated module is escaped."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import scalec
from scalec.compiler.codegen import comment, doc, generate, py_str
from scalec.compiler.loader import bundled_dir
from scalec.compiler.parameterisation import compile_ir, import_source

# The two file names of the audit (issue 14): a newline out of a comment, triple quotes out of the docstring.
EXPLOITS = [
    'z\n**({} if __import__("os").system("touch PWNED") else {}),\n#.scale',
    'a""",__import__("os").system("touch PWNED"),\'\'\';b={#.scale',
]
SCALEC = [sys.executable, "-m", "scalec.cli"]


@pytest.mark.slow
@pytest.mark.parametrize("name", EXPLOITS, ids=["newline", "triple-quote"])
@pytest.mark.parametrize("command", [["plan", "--width", "64", "--depth", "2"], ["compile", "-o", "m.py"]])
def test_audit_file_names_run_nothing(tmp_path, name, command):
    rule = tmp_path / name
    shutil.copy(bundled_dir() / "sp.scale", rule)
    argv = SCALEC + command[:1] + [str(rule)] + command[1:]
    res = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert not (tmp_path / "PWNED").exists()
    if command[0] == "compile":
        res = subprocess.run(
            [sys.executable, "-c", "import m; print(m.SOURCE_FILES[-1])"],
            cwd=tmp_path,
            text=True,
            capture_output=True,
            timeout=60,
        )
        assert res.returncode == 0, res.stderr
        assert not (tmp_path / "PWNED").exists()


_FILENAME_CHARS = st.characters(blacklist_categories=("Cs",), blacklist_characters="/\x00")


@pytest.mark.slow
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(_FILENAME_CHARS, min_size=1, max_size=40).filter(lambda s: s not in (".", "..")))
def test_any_file_name_compiles_imports_and_round_trips(tmp_path, stem):
    name = stem + ".scale"
    if len(os.fsencode(name)) > 255:
        return
    folder = tmp_path / str(abs(hash(stem)))
    folder.mkdir(exist_ok=True)
    rule = folder / name
    shutil.copy(bundled_dir() / "sp.scale", rule)
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        module = import_source(generate(compile_ir(rule)[0]), "probe")
    finally:
        os.chdir(cwd)
    assert sorted(p.name for p in folder.iterdir()) == [name]
    assert module.SOURCE_FILES == (name,)
    assert module.NAME == "SP"


@given(st.text())
def test_escaped_strings_round_trip_and_stay_on_one_line(text):
    assert ast.literal_eval(py_str(text)) == text
    for rendered in (py_str(text), comment(text), doc(text)):
        assert rendered.isascii() and rendered.isprintable()
    assert ast.literal_eval('"""' + doc(text) + '"""') == text


def test_lone_surrogates_from_undecodable_file_names_round_trip():
    text = os.fsdecode(b"r\xffx")
    assert ast.literal_eval(py_str(text)) == text


def test_docstrings_and_cites_cannot_break_out(write_rule, tmp_path):
    marker = tmp_path / "pwned"
    payload = f"__import__('os').system('touch {marker}')"
    text = (
        "parameterisation Evil extends SP\n"
        f'  "doc \\N{{ \u2028 {payload} \x0c \\"\n'
        f'  cite "x\\n\u0085{payload} \\"\n'
        f"  role hidden: lr *= m_N^-1  # {payload}\x0b\u2029{payload}\n"
    )
    path = write_rule("evil", text)
    p = scalec.load(path)
    assert not marker.exists()
    assert p.module.CITATIONS[-1] == f"x\\n\u0085{payload} \\"
    want = f"doc \\N{{ \u2028 {payload} \x0c \\"  # the docstring is wrapped: compare words
    assert " ".join(want.split()) in " ".join(p.module.__doc__.split())
    assert "\\\nLineage" in p.module.__doc__.replace("\n\n", "\n")
    assert Path(p.module.SOURCE_FILES[-1]).name == "evil.scale"
