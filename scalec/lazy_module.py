"""A module-level dependency whose import waits for its first attribute: the full compiler (sympy, lark, jinja2)
behind the rule cache, which a cached rule never needs. It is declared at the top of the importing module and
counts as an ordinary import in the layering (tests/test_layering.py: no cycles through it either)."""

from __future__ import annotations

import importlib
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
