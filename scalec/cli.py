"""The `scalec` command line: one typer app whose commands load lazily. `COMMANDS` names each command's module and
its one-paragraph help; `scalec --help` lists them from that table and `scalec NAME` imports only NAME's module
(click's "lazily loading subcommands" pattern), so `scalec check` never pays for torch."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from difflib import get_close_matches
from importlib import import_module
from typing import Any

import typer
import typer.main
from typer.core import TyperCommand, TyperGroup

from scalec.cli_support import err_console


@dataclass(frozen=True)
class CommandEntry:
    """Where a command lives (a module with `register(app)`) and the help paragraph `scalec --help` lists."""

    module: str
    help: str


# In the order `scalec --help` lists them; tests/test_cli_lazy_commands.py pins each help to the command's own.
COMMANDS: dict[str, CommandEntry] = {
    "compare": CommandEntry(
        "scalec.commands.compare",
        "Compare rule files symbolically (and empirically with --empirical); write report.md/.html.",
    ),
    "coord-check": CommandEntry(
        "scalec.commands.coord_check",
        "Train the bundled GPT (or --model) a few steps across widths and depths, fit log-log slopes, judge.",
    ),
    "derive": CommandEntry(
        "scalec.commands.derive",
        "Derive a parameterisation's exponents from the desiderata and write a rule file that passes `scalec check`.",
    ),
    "plan": CommandEntry(
        "scalec.commands.plan", "Print the per-parameter plan of RULE for a model of the given shape."
    ),
    "rules": CommandEntry("scalec.commands.rules", "List the bundled rule files."),
    "check": CommandEntry(
        "scalec.commands.check",
        "Parse, resolve and check rule files (symbols, identity at base, domains, desiderata, expectations); exit 1\n"
        "when a file has an error or breaks one of its `expect` lines.",
    ),
    "compile": CommandEntry(
        "scalec.commands.compile", "Compile a rule file to a standalone Python module (stdlib only)."
    ),
    "fmt": CommandEntry("scalec.commands.fmt", "Format rule files canonically (comments kept)."),
    "show": CommandEntry("scalec.commands.show", "Every role x HP value at a shape, with its scaling exponents."),
    "search": CommandEntry(
        "scalec.commands.search",
        "Minimise final validation loss (or --objective's value) over the chosen HPs, starting from the rule's\n"
        "defaults (trial 0). Killed workers lose nothing: their trial is failed (heartbeat on RDB storages, dead pid\n"
        "locally) and retried once with the same parameters, resuming its run from the store.",
    ),
    "sweep": CommandEntry(
        "scalec.commands.sweep",
        "Train every HP point (x seeds) once; finished and diverged runs are stored under --out and never\n"
        "rerun, so a killed sweep resumes where it stopped. Prints a table (best first) and the best config.\n"
        "--model FILE.py:FUNC trains your model in the bundled loop, --objective FILE.py:FUNC with your own.",
    ),
    "train": CommandEntry(
        "scalec.commands.train",
        "Train the bundled GPT (bytes, Llama-style), or --model FILE.py:FUNC, with the rule's init, per-parameter\n"
        "optimizer settings and forward multipliers; writes config.json, plan.json (with --model also binding.json:\n"
        "roles, folds, hooks), metrics.jsonl, summary.json and a checkpoint.",
    ),
    "transfer": CommandEntry(
        "scalec.commands.transfer",
        "Sweep the HP at each size for each rule; report the optimum per size (parabola in log2 space), its\n"
        "drift from the base in factors of 2, and the loss at the transferred HP vs the best at the target.",
    ),
    "data": CommandEntry("scalec.commands.data", "Training corpora (byte-level)."),
}


def load_command(name: str) -> Any:
    """The (typer) click command `name`, built from its module's `register(app)` (the module is imported now)."""
    app = typer.Typer()
    import_module(COMMANDS[name].module).register(app)
    return typer.main.get_group(app).commands[name]


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


class LazyCommands(OneLineErrors):
    """The root group: commands from `COMMANDS`, each module imported when its command runs (or shows its help);
    the root help lists them from the table without importing any."""

    listing = False  # True while the root help is formatted

    def list_commands(self, ctx: typer.Context) -> list[str]:
        return [*COMMANDS, *(name for name in super().list_commands(ctx) if name not in COMMANDS)]  # table order

    def get_command(self, ctx: typer.Context, cmd_name: str) -> Any:
        if cmd_name in self.commands or cmd_name not in COMMANDS:
            return super().get_command(ctx, cmd_name)
        if self.listing:
            return TyperCommand(cmd_name, help=COMMANDS[cmd_name].help)
        self.commands[cmd_name] = load_command(cmd_name)
        return self.commands[cmd_name]

    def resolve_command(self, ctx: typer.Context, args: list[str]) -> tuple[str | None, Any, list[str]]:
        try:
            return super().resolve_command(ctx, args)
        except typer.TyperException as exc:  # an unknown name: typer suggests from the commands loaded so far
            if self.suggest_commands and args and not args[0].startswith("-") and hasattr(exc, "message"):
                matches = get_close_matches(args[0], self.list_commands(ctx))  # ... here from the whole table
                stem = exc.message.split(". Did you mean ")[0].rstrip(".")
                exc.message = f"{stem}. Did you mean {', '.join(repr(m) for m in matches)}?" if matches else f"{stem}."
            raise

    def format_help(self, ctx: typer.Context, formatter: Any) -> None:
        self.listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self.listing = False


def _root() -> None:
    """Runs before every command (nothing to do): a callback makes typer build the root group with no command
    registered eagerly."""


app = typer.Typer(
    name="scalec",
    callback=_root,
    cls=LazyCommands,
    help="Declarative scaling rules for neural-network parameterisations: check, compile, apply, compare.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
