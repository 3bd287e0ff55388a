"""A run dir: config.json, plan.json, metrics.jsonl, checkpoint.pt and summary.json of one training run.

One training process holds a run dir at a time (an fcntl lock on `.lock`; a second is refused in one line).
Every file read back is checked against its schema before use: a file that does not fit is one line naming it
and the fix, and nothing is deleted or overwritten.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from scalec.errors import ScalecError
from scalec.runtime.trainer.metrics import write_json_atomic
from scalec.runtime.trainer.train_config import RunSummary

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no lock
    fcntl = None  # type: ignore[assignment]

LOCK = ".lock"
STATUSES = ("finished", "diverged", "running")


class RunDirError(ScalecError):
    """A run dir that cannot be created, locked or read back."""


def _unusable(path: Path, exc: OSError) -> RunDirError:
    return RunDirError(f"error: --out {path} is not a writable folder ({exc.strerror or exc}); pass another --out")


def _check_path(path: Path) -> None:
    """Refuse a path that is a file or lies under a file before touching anything."""
    for p in (path, *path.parents):
        if p.exists() and not p.is_dir():
            where = "is a file" if p == path else f"lies under {p}, which is a file"
            raise RunDirError(f"error: --out {path} {where}; pass a folder as --out")


class RunDir:
    """A run dir's files, each read back validated. `open` creates and locks it; plain construction only reads."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

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
            raise _unusable(path, exc) from None
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
            yield cls(path)
        except BaseException:
            if created and [p.name for p in path.iterdir()] == [LOCK]:
                (path / LOCK).unlink()
                path.rmdir()
            raise
        finally:
            os.close(fd)  # closing releases the lock; the file stays (unlinking it would race with a waiter)

    def _read_json(self, name: str) -> Any:
        path = self.path / name
        try:
            return json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise RunDirError(
                f"error: {path} is unreadable ({type(exc).__name__}); move the run dir away or pass another --out"
            ) from None

    def has_run(self) -> bool:
        """Whether a run was started here (config.json exists)."""
        return (self.path / "config.json").exists()

    def config(self) -> dict[str, Any]:
        """config.json as a dict of settings."""
        data = self._read_json("config.json")
        if not isinstance(data, dict):
            raise RunDirError(
                f"error: {self.path / 'config.json'} is not a training config (a JSON object of settings); "
                "move the run dir away or pass another --out"
            )
        return data

    def summary(self, total_steps: int) -> RunSummary | None:
        """The run's outcome if it is over (finished or diverged), checked against the schema and `total_steps`."""
        path = self.path / "summary.json"
        if not path.exists():
            return None
        data = self._read_json("summary.json")
        problem = _summary_problem(data, total_steps)
        if problem is not None:
            raise RunDirError(
                f"error: {path} is not a run summary ({problem}); move it away to train the run again, "
                "or pass another --out"
            )
        return RunSummary(**data) if data["status"] in ("finished", "diverged") else None

    def write_json(self, name: str, data: Any) -> None:
        """Write `name` atomically."""
        write_json_atomic(self.path / name, data)

    def write_text(self, name: str, text: str) -> None:
        """Write `name` atomically."""
        tmp = self.path / f".{name}.tmp"
        tmp.write_text(text)
        os.replace(tmp, self.path / name)


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
    return None
