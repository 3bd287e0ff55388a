"""Layering (issue 19 item 4): scalec's own modules import each other only at module level, and that import graph
has no cycle. The graph is read from the source (AST): every `import` / `from ... import` of a scalec module, the
packages such an import runs first (`scalec.runtime.plan`'s __init__ for `scalec.runtime.plan.binding`, except a
module's own packages, which always run before it), and each declared
`lazy_module("scalec....")` and each module a package face names in `lazy_face(globals(), {...})`
(scalec/lazy_module.py: imported on first use, still dependencies). Imports under
`if TYPE_CHECKING:` are for annotations and never run. Third-party imports may stay inside functions (torch,
matplotlib, optuna, transformers: optional or heavy); this test does not look at them."""

from __future__ import annotations

import ast
import functools
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def scalec_modules() -> dict[str, Path]:
    """Module name -> file, from pyproject's package-dir (scalec.compiler lives in compiler/, ...)."""
    section = (ROOT / "pyproject.toml").read_text().split("[tool.setuptools.package-dir]")[1].split("\n[")[0]
    dirs = dict(re.findall(r'^"([\w.]+)"\s*=\s*"([^"]+)"', section, flags=re.M))
    assert dirs["scalec"] == "scalec" and dirs["scalec.compiler"] == "compiler"
    modules = {}
    for package, folder in dirs.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = [*package.split("."), *path.relative_to(ROOT / folder).with_suffix("").parts]
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


MODULES = scalec_modules()


def _init(package: str) -> str:
    """The node of a package's import-time run (its __init__'s own imports, not the names its face loads later)."""
    return f"{package} (init)"


def _targets(module: str, node: ast.AST) -> list[tuple[str, bool]]:
    """(target node, whether it is a lazy face edge) for the scalec modules an import statement, a `lazy_module` or a
    `lazy_face` call names, and the packages the import system runs before them."""
    face = False
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom):
        if node.level:
            package = module.split(".") if MODULES[module].name == "__init__.py" else module.split(".")[:-1]
            package = package[: len(package) - node.level + 1]
            base = ".".join(package + ([node.module] if node.module else []))
        else:
            base = node.module or ""
        submodules = [f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in MODULES]
        # `from package import submodule` runs the package (an ancestor below); any other name reads its face
        names = submodules if len(submodules) == len(node.names) else [base, *submodules]
    elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "lazy_module":
        names = [node.args[0].value]  # lazy_module("scalec.compiler.pipeline")
    elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "lazy_face":
        names = [value.value for value in node.args[1].values]  # lazy_face(globals(), {name: "scalec.x", ...})
        face = True
    else:
        return []
    found: list[tuple[str, bool]] = []
    for name in names:
        parts = name.split(".")
        for i in range(1, len(parts)):  # the packages above it run first (a module's own packages always have)
            package = ".".join(parts[:i])
            if package in MODULES and package != module and not module.startswith(package + "."):
                found.append((_init(package), False))
        if name in MODULES and name != module:
            found.append((name, face))
    return list(dict.fromkeys(found))


def _is_type_checking(test: ast.expr) -> bool:
    return "TYPE_CHECKING" in ast.unparse(test)


@functools.cache  # one walk of the source serves every test here
def import_graph() -> tuple[dict[str, set[str]], list[tuple[str, int, str]]]:
    """(module-level edges, function-level imports of scalec modules as (module, line, target)). A package has two
    nodes: its name (what reading a name from it may load, its face's modules included) and `NAME (init)` (what
    running its __init__ imports)."""
    edges: dict[str, set[str]] = {m: set() for m in MODULES}
    eager: dict[str, set[str]] = {m: set() for m in MODULES}
    deferred: list[tuple[str, int, str]] = []
    for module, path in MODULES.items():

        def visit(node: ast.AST, in_function: bool, module: str = module) -> None:
            if isinstance(node, ast.If) and _is_type_checking(node.test):
                for child in node.orelse:
                    visit(child, in_function)
                return
            for target, face in _targets(module, node):
                if in_function:
                    deferred.append((module, node.lineno, target))
                else:
                    edges[module].add(target)
                    if not face:
                        eager[module].add(target)
            inner = in_function or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            for child in ast.iter_child_nodes(node):
                visit(child, inner)

        visit(ast.parse(path.read_text(), str(path)), False)
    for package in [m for m, path in MODULES.items() if path.name == "__init__.py"]:
        edges[_init(package)] = eager[package]
    return edges, deferred


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (or a module importing itself)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def strongconnect(v: str) -> None:  # Tarjan
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in edges[v]:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            strongconnect(v)
    return found


def test_the_walker_sees_the_modules_and_the_edges_it_must():
    # the walker itself, on edges known by hand: a plain import, a package run first, a lazy_module declaration
    edges, _ = import_graph()
    assert len(MODULES) > 100 and "scalec.compiler.pipeline" in MODULES and "scalec.runtime.plan" in MODULES
    assert "scalec.compiler.codegen" in edges["scalec.compiler.pipeline"]
    assert "scalec.runtime" in edges["scalec.api"]  # `from scalec.runtime import Plan, make_plan`: its face
    assert "scalec.compiler (init)" in edges["scalec.runtime.plan.planner"]  # runs before compiler.vocabulary
    assert "scalec.runtime.plan (init)" not in edges["scalec.runtime.plan.planner"]  # its own package: always first
    assert "scalec.runtime.plan.planner" in edges["scalec.runtime.plan (init)"]  # an eager __init__
    assert "scalec.runtime.studies.studies" not in edges["scalec.runtime.studies (init)"]  # its face is lazy
    assert "scalec.compiler.pipeline" in edges["scalec.compiler.parameterisation"]  # lazy_module(...)
    assert "scalec.study_api" in edges["scalec"]  # lazy_face(globals(), {..., "sweep": "scalec.study_api"})
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_scalec_module_imports_another_inside_a_function():
    _, deferred = import_graph()
    assert [f"{m}:{line} imports {t}" for m, line, t in deferred] == []


def test_the_module_level_import_graph_has_no_cycle():
    edges, _ = import_graph()
    assert cycles(edges) == []


CLI = ("scalec.cli", "scalec.cli_support", "scalec.commands", "scalec.parsing")


def _reach(edges: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for target in edges[todo.pop()] - seen:
            seen.add(target)
            todo.append(target)
    return seen


def test_the_core_never_reaches_the_cli_and_the_compiler_never_reaches_the_runtime():
    # rooms, lowest first: dsl, compiler (the value parser is compiler/values.py), runtime, then the CLI on top
    edges, _ = import_graph()
    for module in MODULES:
        names = {name.removesuffix(" (init)") for name in _reach(edges, module)}
        if module.startswith(("scalec.dsl", "scalec.compiler", "scalec.runtime")):
            assert not [n for n in names if n.startswith(CLI)], module
        if module.startswith(("scalec.dsl", "scalec.compiler")):
            assert not [n for n in names if n.startswith("scalec.runtime")], module
        if module.startswith("scalec.dsl"):
            assert not [n for n in names if n.startswith("scalec.compiler")], module


@pytest.mark.parametrize(
    "package",
    [
        "scalec",
        "scalec.compiler",
        "scalec.dsl",
        "scalec.runtime",
        "scalec.runtime.plan",
        "scalec.runtime.studies",
        "scalec.runtime.trainer",
    ],
)
def test_each_package_face_declares_all_and_every_name_in_it_resolves(package):
    face = importlib.import_module(package)
    assert isinstance(getattr(face, "__all__", None), list | tuple) and face.__all__
    for name in face.__all__:
        assert getattr(face, name) is not None, f"{package}.{name}"
