"""Output files the rule commands write: checked before any work, written atomically."""

from __future__ import annotations

from pathlib import Path

from scalec.errors import ScalecError
from scalec.runtime.atomic_io import WriteError, write_text_atomic


class OutputPathError(ScalecError):
    """An output path that cannot be written."""


def check_output_file(path: Path, option: str) -> None:
    """Refuse, before any work, an output path that is a folder or lies in a folder that does not exist."""
    if path.is_dir():
        raise OutputPathError(f"error: {option} {path} is a folder; give a file path such as {path / 'module.py'}")
    if not path.parent.is_dir():
        raise OutputPathError(f"error: {option} {path}: the folder {path.parent} does not exist; create it first")


def write_atomic(path: Path, text: str, option: str) -> None:
    """Write through a temporary file beside `path`, then rename; on failure nothing is left behind."""
    check_output_file(path, option)
    try:
        write_text_atomic(path, text, fix=f"pass a writable {option} path")
    except WriteError as exc:
        raise OutputPathError(f"{exc}".replace("error: cannot write", f"error: {option}: cannot write", 1)) from None
