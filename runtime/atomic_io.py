"""Files scalec writes and reads back: one atomic writer and one validated JSON reader.

Every file is written to a hidden temporary file in the same folder, flushed and fsynced, then moved into place
with os.replace (and the folder fsynced), so an interruption or a full disk leaves the previous file intact.
A failed write removes its temporary file and raises WriteError: one line naming the file, the reason and, for a
full disk, the space the file needs. JSON read back goes through `read_json`: unreadable, malformed or absurdly
nested text is one ReadError line naming the file, never a traceback.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from scalec.errors import ScalecError

MAX_DEPTH = 64  # nesting deeper than this is never a file scalec wrote
SPACE_ERRNOS = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)


class WriteError(ScalecError):
    """A file could not be written (no space, read-only, not a folder); the previous file is intact."""


class ReadError(ScalecError):
    """A file read back is unreadable, not JSON, or not the kind of data it should hold."""


def _size_text(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def write_error(path: Path, exc: OSError, size: int | None = None, fix: str | None = None) -> WriteError:
    """The one-line WriteError for an OSError met while writing `path` (`size` bytes)."""
    reason = exc.strerror or type(exc).__name__
    if exc.errno in SPACE_ERRNOS and size is not None:
        try:
            free = f", {_size_text(shutil.disk_usage(path.parent).free)} free"
        except OSError:
            free = ""
        reason += f": it needs {_size_text(size)}{free}"
        fix = fix or "free some space or pass another --out"
    elif exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        fix = fix or "pass a writable --out"
    elif exc.errno in (errno.ENOTDIR, errno.EISDIR, errno.ENOENT):
        fix = fix or "pass a folder as --out"
    tail = f"; {fix}" if fix else ""
    return WriteError(f"error: cannot write {path} ({reason}){tail}; nothing there was changed")


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # not every platform opens folders
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_bytes_atomic(path: str | os.PathLike, data: bytes, mode: int | None = None, fix: str | None = None) -> None:
    """Write `data` to `path` atomically and durably (temporary file, fsync, os.replace); WriteError on failure
    with the temporary file removed and any previous `path` untouched. `mode`: permission bits of the new file;
    `fix`: what the error line tells the user to do (default: by cause)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644 if mode is None else mode)
    except OSError as exc:
        raise write_error(path, exc, len(data), fix) from None
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise write_error(path, exc, len(data), fix) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def write_text_atomic(path: str | os.PathLike, text: str, mode: int | None = None, fix: str | None = None) -> None:
    """`write_bytes_atomic` of UTF-8 text."""
    write_bytes_atomic(path, text.encode(), mode, fix)


def write_json_atomic(
    path: str | os.PathLike, data: Any, *, sort_keys: bool = False, mode: int | None = None, fix: str | None = None
) -> None:
    """Indented JSON (NaN and inf kept as JSON's NaN/Infinity tokens) written atomically."""
    text = json.dumps(data, indent=2, allow_nan=True, sort_keys=sort_keys) + "\n"
    write_text_atomic(path, text, mode, fix)


def _too_deep(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether `value` nests lists/objects deeper than `limit` (iterative: never recurses)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > limit:
                return True
            children = item.values() if isinstance(item, dict) else item
            stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))
    return False


def parse_json(text: str, where: str, fix: str) -> Any:
    """Parse one JSON document read from `where`; ReadError (one line ending in `fix`) for malformed text or
    nesting deeper than MAX_DEPTH."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ReadError(f"error: {where} is not valid JSON ({exc.msg} at line {exc.lineno}); {fix}") from None
    except RecursionError:
        value = None
        deep = True
    else:
        deep = _too_deep(value)
    if deep:
        raise ReadError(f"error: {where} nests deeper than {MAX_DEPTH} levels, which scalec never writes; {fix}")
    return value


def read_json(
    path: str | os.PathLike, fix: str, check: Callable[[Any], str | None] | None = None, what: str = "file"
) -> Any:
    """Read and parse the JSON file `path`; `check(value)` names what is wrong with the value (None: fine).
    Every failure is one ReadError line naming the file and ending in `fix`."""
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise ReadError(f"error: {path} is unreadable ({reason}); {fix}") from None
    value = parse_json(text, str(path), fix)
    problem = check(value) if check is not None else None
    if problem is not None:
        raise ReadError(f"error: {path} is not a {what} ({problem}); {fix}")
    return value


def check_output_dir(path: str | os.PathLike, option: str = "--out") -> Path:
    """Refuse, before any work and without creating anything, an output folder that is a file, lies under one, or
    cannot be written (probed in it, or in its nearest existing parent); WriteError is one line naming `option`."""
    path = Path(path)
    for p in (path, *path.parents):
        if p.exists() and not p.is_dir():
            where = "is a file" if p == path else f"lies under {p}, which is a file"
            raise WriteError(f"error: {option} {path} {where}; pass a folder as {option}")
    existing = next(p for p in (path, *path.parents) if p.exists())
    probe = existing / f".scalec-write-test.{os.getpid()}"
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        os.unlink(probe)
    except OSError as exc:
        raise WriteError(
            f"error: {option} {path}: cannot write there ({exc.strerror or exc}); pass a writable {option}"
        ) from None
    return path


def ensure_dir(path: str | os.PathLike, option: str = "--out") -> Path:
    """`check_output_dir`, then create the folder."""
    path = check_output_dir(path, option)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WriteError(
            f"error: {option} {path}: cannot create it ({exc.strerror or exc}); pass a writable {option}"
        ) from None
    return path
