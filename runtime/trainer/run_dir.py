"""A run dir: config.json, plan.json, metrics.jsonl, checkpoint.pt and summary.json of one training run.

One training process holds a run dir at a time (an fcntl lock on `.lock`; a second is refused in one line).
A run dir that cannot be written (a read-only folder) is opened read-only, so a finished run there is still
reported. Every file read back is checked against its schema before use (`atomic_io.read_json`): a file that does
not fit is one line naming it and the fix, and nothing is deleted or overwritten. Files are written atomically.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from scalec.errors import ScalecError
from scalec.runtime.atomic_io import ReadError, read_json, write_json_atomic, write_text_atomic
from scalec.runtime.trainer.train_config import RunSummary

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no lock
    fcntl = None  # type: ignore[assignment]

LOCK = ".lock"
STATUSES = ("finished", "diverged", "running")


class RunDirError(ScalecError):
    """A run dir that cannot be created, locked or read back."""


READ_ONLY = (errno.EROFS, errno.EACCES, errno.EPERM)
FIX = "move the run dir away or pass another --out"


def _unusable(path: Path, exc: OSError | str) -> RunDirError:
    reason = exc if isinstance(exc, str) else exc.strerror or exc
    return RunDirError(f"error: --out {path} is not a writable folder ({reason}); pass another --out")


def _check_path(path: Path) -> None:
    """Refuse a path that is a file or lies under a file before touching anything."""
    for p in (path, *path.parents):
        if p.exists() and not p.is_dir():
            where = "is a file" if p == path else f"lies under {p}, which is a file"
            raise RunDirError(f"error: --out {path} {where}; pass a folder as --out")


class RunDir:
    """A run dir's files, each read back validated. `open` creates and locks it; plain construction only reads
    (`writable` False)."""

    def __init__(self, path: Path, writable: bool = False) -> None:
        self.path = Path(path)
        self.writable = writable

    def require_writable(self) -> None:
        """Refuse (one line) to go on in a run dir opened read-only."""
        if not self.writable:
            raise _unusable(self.path, "read-only")

    @classmethod
    @contextlib.contextmanager
    def open(cls, path: Path) -> Iterator[RunDir]:
        """Create (if needed) and lock `path` for one training process; a folder created here and left empty by
        an error is removed again."""
        path = Path(path)
        _check_path(path)
        created = not path.exists()
        try:
            path.mkdir(parents=True, exist_ok=True)
            fd = os.open(path / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            if exc.errno not in READ_ONLY or not path.is_dir() or not (path / "config.json").is_file():
                raise _unusable(path, exc) from None
            fd = None
        if fd is None:  # a read-only run dir: a finished run can still be reported; anything else refuses
            yield cls(path, writable=False)
            return
        try:
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
                    raise RunDirError(
                        f"error: {path} is in use by another training process (pid {holder}); wait for it to "
                        "finish or pass another --out"
                    ) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            yield cls(path, writable=True)
        except BaseException:
            if created and [p.name for p in path.iterdir()] == [LOCK]:
                (path / LOCK).unlink()
                path.rmdir()
            raise
        finally:
            os.close(fd)  # closing releases the lock; the file stays (unlinking it would race with a waiter)

    def _read_json(self, name: str, fix: str = FIX, check: Any = None, what: str = "file") -> Any:
        try:
            return read_json(self.path / name, fix, check, what)
        except ReadError as exc:
            raise RunDirError(str(exc)) from None

    def has_run(self) -> bool:
        """Whether a run was started here (config.json exists)."""
        return (self.path / "config.json").exists()

    def config(self) -> dict[str, Any]:
        """config.json as a dict of settings."""
        return self._read_json(
            "config.json",
            check=lambda d: None if isinstance(d, dict) else "a JSON object of settings expected",
            what="training config",
        )

    def summary(self, total_steps: int) -> RunSummary | None:
        """The run's outcome if it is over (finished or diverged), checked against the schema and `total_steps`."""
        path = self.path / "summary.json"
        if not path.exists():
            return None
        data = self._read_json(
            "summary.json",
            "move it away to train the run again, or pass another --out",
            lambda d: _summary_problem(d, total_steps),
            "run summary",
        )
        return RunSummary(**data) if data["status"] in ("finished", "diverged") else None

    def write_json(self, name: str, data: Any) -> None:
        """Write `name` atomically (WriteError, one line, when it cannot be)."""
        self.require_writable()
        write_json_atomic(self.path / name, data)

    def write_text(self, name: str, text: str) -> None:
        """Write `name` atomically (WriteError, one line, when it cannot be)."""
        self.require_writable()
        write_text_atomic(self.path / name, text)


def _summary_problem(data: Any, total_steps: int) -> str | None:
    """What is wrong with a summary.json's content, in a few words; None when it fits."""
    if not isinstance(data, dict):
        return f"a JSON {type(data).__name__}, not an object"
    fields = {f.name: f for f in dataclasses.fields(RunSummary)}
    unknown = sorted(set(data) - set(fields))
    missing = [n for n, f in fields.items() if f.default is dataclasses.MISSING and n not in data]
    if unknown or missing:
        return f"unknown {unknown}" if unknown else f"missing {missing}"
    if data["status"] not in STATUSES:
        return f"status {data['status']!r} is not one of {', '.join(STATUSES)}"
    for name, value in data.items():
        kind = fields[name].type
        if name in ("status", "device"):
            ok = isinstance(value, str)
        elif kind == "int":
            ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
        else:
            ok = (value is None and "None" in kind) or (isinstance(value, (int, float)) and not isinstance(value, bool))
        if not ok:
            return f"{name}: {value!r} is not a {'count' if kind == 'int' else 'number'}"
    if data["steps"] > total_steps or (data["status"] == "finished" and data["steps"] != total_steps):
        return f"it says {data['status']} after {data['steps']} steps, but this run has {total_steps}"
    if data["status"] == "finished" and not all(
        data[k] is not None and math.isfinite(data[k]) for k in ("final_val_loss", "best_val_loss")
    ):
        return "it says finished, but its validation losses are not finite numbers"
    return None
