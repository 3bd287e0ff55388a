"""Shared CLI plumbing: turn ScalecError (and friends) into one clear line and exit code 1."""

from __future__ import annotations

import errno
import functools
import signal
import sys
from collections.abc import Callable
from typing import TypeVar

import typer
from rich.console import Console

from scalec.errors import ScalecError
from scalec.redact import mask_secrets

F = TypeVar("F", bound=Callable)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)
console = Console(highlight=False)


def format_error(exc: BaseException) -> str:
    """`error: ...` unless the message is already located (`path:line:col: error: ...`)."""
    text = str(exc)
    return text if text.startswith("error:") or ": error: " in text.split("\n", 1)[0] else f"error: {text}"


def os_error_line(exc: OSError) -> str:
    """One located line for an OSError no layer below turned into a ScalecError (a read-only or full disk, a
    file where a folder belongs): the path, the system's reason and what to do."""
    where = " -> ".join(str(f) for f in (exc.filename, exc.filename2) if f is not None) or "a file"
    reason = exc.strerror or type(exc).__name__
    if exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        fix = "free some space and run the command again"
    elif exc.errno in (errno.ENOTDIR, errno.EISDIR):
        fix = "pass a folder where a folder is asked for and a file where a file is"
    else:
        fix = "check that the path exists and is writable, or pass another output path"
    return mask_secrets(f"error: {where}: {reason}; {fix}")


def guarded(fn: F) -> F:
    """Decorate a CLI command so user errors print as `error: ...` (exit 1), never a traceback; an OSError that
    escapes is one line naming the path. Every line has passwords in URLs masked."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ScalecError as exc:
            err_console.print(mask_secrets(format_error(exc)), markup=False)
            raise typer.Exit(exc.exit_code) from None
        except OSError as exc:
            err_console.print(os_error_line(exc), markup=False)
            raise typer.Exit(1) from None
        except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM/SIGHUP where a command turns them into this
            signum = getattr(exc, "signum", signal.SIGINT)
            name = signal.Signals(signum).name
            err_console.print(f"error: interrupted ({name}); run the same command again to continue", markup=False)
            raise typer.Exit(128 + signum) from None

    return wrapper  # type: ignore[return-value]


def fail(message: str) -> None:
    """Print a one-line error and exit 1 (for checks done inside the CLI layer)."""
    err_console.print(mask_secrets(f"error: {message}"), markup=False)
    sys.exit(1)
