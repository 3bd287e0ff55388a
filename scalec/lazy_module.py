"""Imports that wait for first use, declared at module level: `lazy_module` for a dependency a light path must not
load (the full compiler behind the rule cache; the compiler under a run given its rules; torch under the plan), and
`lazy_face` for a package's names. Both count as ordinary imports in the layering (tests/test_layering.py: no
cycle runs through them either)."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any


class LazyModule:
    """Stands for module `name`; the first attribute read imports it (then every read is a plain getattr)."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):  # copy, pickle and friends probe dunders: never import for them
            raise AttributeError(attr)
        if self._module is None:
            self._module = importlib.import_module(self._name)
        return getattr(self._module, attr)

    def __repr__(self) -> str:
        return f"<lazy module {self._name!r}{'' if self._module is None else ' (imported)'}>"


def lazy_module(name: str) -> Any:
    """`name` (an absolute module name), imported on its first use."""
    return LazyModule(name)


def lazy_face(namespace: dict[str, Any], exports: Mapping[str, str]) -> tuple[Callable, Callable]:
    """A package's `(__getattr__, __dir__)`: each name in `exports` ({name: module}) is read from its module on first
    use, so importing the package loads none of them. `namespace` is the package's `globals()`."""
    package = namespace["__name__"]

    def __getattr__(name: str) -> Any:
        if name in exports:
            return getattr(importlib.import_module(exports[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(namespace.get("__all__", ())))

    return __getattr__, __dir__
