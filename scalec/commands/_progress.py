"""One overall progress bar for a study of many runs (sweep, transfer, search, coord-check): a count, elapsed
time and ETA, with per-run lines printed above it. Drawn only on a terminal; a log file gets just the lines."""

from __future__ import annotations

from types import TracebackType
from typing import Any

from scalec.cli_support import console


class StudyProgress:
    """`with StudyProgress("sweep", 12) as bar: ... bar.advance(line)` (or `bar.update(done)` for a count
    that other processes move, as search's workers do)."""

    def __init__(self, label: str, total: int) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.total = total
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("elapsed"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            transient=True,
            disable=not console.is_terminal,
        )
        self._task = self._progress.add_task(label, total=total)

    def __enter__(self) -> StudyProgress:
        self._progress.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._progress.stop()

    def log(self, line: str) -> None:
        """Print a line above the bar."""
        console.print(line, markup=False, soft_wrap=True)

    def advance(self, line: str | None = None, runs: int = 1) -> None:
        """`runs` more runs done; print `line` (what finished) above the bar."""
        if line is not None:
            self.log(line)
        self._progress.advance(self._task, runs)

    def update(self, done: int, total: int | None = None, **_: Any) -> None:
        """Set the count of runs done (and the total when it changed)."""
        if total is not None and total != self.total:
            self.total = total
            self._progress.update(self._task, total=total)
        self._progress.update(self._task, completed=done)
