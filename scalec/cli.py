"""The `scalec` command line: one typer app; each module in `scalec.commands` registers its commands."""

from __future__ import annotations

import importlib
import pkgutil

import typer

import scalec.commands

app = typer.Typer(
    name="scalec",
    help="Declarative scaling rules for neural-network parameterisations: check, compile, apply, compare.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

for _info in sorted(pkgutil.iter_modules(scalec.commands.__path__), key=lambda m: m.name):
    if _info.name.startswith("_"):
        continue
    _module = importlib.import_module(f"scalec.commands.{_info.name}")
    _module.register(app)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
