"""The root group loads command modules lazily: `scalec --help` lists every command from the static table without
importing one, the table's help is each command's own first help paragraph, and `scalec NAME` imports NAME only."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest

from scalec.cli import COMMANDS, load_command


@pytest.mark.parametrize("name", list(COMMANDS))
def test_the_table_help_is_the_first_paragraph_of_the_commands_own_help(name):
    command = load_command(name)
    own = inspect.cleandoc(command.short_help or command.help or "").split("\n\n")[0]
    assert COMMANDS[name].help == own


def _commands_imported(*argv: str) -> list[str]:
    code = (
        "import sys\n"
        f"sys.argv = ['scalec', *{list(argv)!r}]\n"
        "from scalec.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules if m.startswith('scalec.commands.') and not m.split('.')[-1][0] == '_'))\n"
        "print(sorted(m for m in ('torch', 'sympy', 'lark', 'jinja2') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.strip().splitlines()[-2:]


def test_root_help_lists_every_command_without_importing_any_command_module():
    out = subprocess.run([sys.executable, "-m", "scalec.cli", "--help"], capture_output=True, text=True, check=True)
    listed = [line.split()[1] for line in out.stdout.splitlines() if line.startswith("│ ") and line.split()[1:2]]
    assert [name for name in listed if name in COMMANDS] == list(COMMANDS)
    assert _commands_imported("--help") == ["[]", "[]"]


def test_a_cached_check_imports_its_own_command_module_only_and_no_torch():
    subprocess.run([sys.executable, "-m", "scalec.cli", "check", "mup"], capture_output=True, check=True)  # cache it
    assert _commands_imported("check", "mup") == ["['scalec.commands.check']", "[]"]


def test_a_mistyped_command_is_told_the_close_names_of_commands_not_loaded_yet():
    out = subprocess.run([sys.executable, "-m", "scalec.cli", "chek", "mup"], capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.startswith("error: No such command 'chek'. Did you mean 'check'? (see `")


def test_every_commands_help_imports_no_torch_sympy_lark_or_jinja2():
    """`scalec NAME --help` needs the options only: the runtime and the full compiler wait for a real run
    (the command modules declare them with lazy_module), so help answers in a fraction of a second."""
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from scalec.cli import COMMANDS, app\n"
        "runner = CliRunner()\n"
        "for name in COMMANDS:\n"
        "    result = runner.invoke(app, [name, '--help'])\n"
        "    assert result.exit_code == 0 and 'Usage' in result.output, (name, result.output)\n"
        "print(sorted(m for m in ('torch', 'sympy', 'lark', 'jinja2') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
