"""The `scalec` command line: one typer app; each module in `scalec.commands` registers its commands."""

from __future__ import annotations

import importlib
import pkgutil
import sys

import typer
from typer.core import TyperGroup

import scalec.commands
from scalec.cli_support import err_console


class OneLineErrors(TyperGroup):
    """Usage errors (a bad option value, a missing argument) print as one `error:` line with exit 2."""

    def main(self, *args, standalone_mode: bool = True, **kwargs):  # type: ignore[override]
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except typer.Abort:
            err_console.print("error: aborted", markup=False)
            sys.exit(1)
        except typer.TyperException as exc:  # typer's click exceptions: usage errors and friends
            if type(exc).__name__ == "NoArgsIsHelpError":  # `scalec` alone prints the help
                exc.show()
                sys.exit(exc.exit_code)
            ctx = getattr(exc, "ctx", None)
            where = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
            message = " ".join(exc.format_message().split())
            err_console.print(f"error: {message}{where}", markup=False)
            sys.exit(getattr(exc, "exit_code", 2))
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    name="scalec",
    cls=OneLineErrors,
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
