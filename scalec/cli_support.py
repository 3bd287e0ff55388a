"""Shared CLI plumbing: turn ScalecError (and friends) into one clear line and exit code 1."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import TypeVar

import typer
from rich.console import Console

from scalec.errors import ScalecError

F = TypeVar("F", bound=Callable)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)
console = Console(highlight=False)


def format_error(exc: BaseException) -> str:
    """`error: ...` unless the message is already located (`path:line:col: error: ...`)."""
    text = str(exc)
    return text if text.startswith("error:") or ": error: " in text.split("\n", 1)[0] else f"error: {text}"


def guarded(fn: F) -> F:
    """Decorate a CLI command so user errors print as `error: ...` (exit 1), never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ScalecError as exc:
            err_console.print(format_error(exc), markup=False)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            err_console.print("error: interrupted", markup=False)
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def fail(message: str) -> None:
    """Print a one-line error and exit 1 (for checks done inside the CLI layer)."""
    err_console.print(f"error: {message}", markup=False)
    sys.exit(1)
