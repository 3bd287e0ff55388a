"""Located errors for rule files, rendered like a compiler: `path:line:col: error: ...`, source, caret, hint."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from scalec.dsl.ast import Loc
from scalec.errors import ScalecError


class RuleError(ScalecError):
    """An error at a place in a rule file."""

    def __init__(self, loc: Loc, message: str, hint: str | None = None, source: str | None = None):
        self.loc = loc
        self.message = message
        self.hint = hint
        self.source = source
        super().__init__(self.render())

    @property
    def headline(self) -> str:
        """The one-line summary: `path:line:col: error: message`."""
        return f"{self.loc.path}:{self.loc.line}:{self.loc.col}: error: {self.message}"

    def render(self) -> str:
        lines = [self.headline]
        src_line = _source_line(self.source, self.loc.line)
        if src_line is not None:
            width = 1
            if self.loc.end_line == self.loc.line and self.loc.end_col > self.loc.col:
                width = self.loc.end_col - self.loc.col
            col = max(self.loc.col, 1)
            if len(src_line) > _SHOWN:  # a window of the line around the column
                start = max(0, min(col - 1 - _SHOWN // 2, len(src_line) - _SHOWN))
                src_line = ("..." if start else "") + src_line[start : start + _SHOWN] + "..."
                col = col - start + (3 if start else 0)
            lines.append(f"    {src_line}")
            lines.append("    " + " " * (col - 1) + "^" * max(1, min(width, 60)))
        if self.hint:
            lines.append(f"hint: {self.hint}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.render()


_SHOWN = 100  # characters of a long source line shown around the error


def _source_line(source: str | None, line: int) -> str | None:
    if not source or line < 1:
        return None
    lines = source.splitlines()
    if line > len(lines):
        return None
    return lines[line - 1].expandtabs(1)


def did_you_mean(word: str, candidates: Iterable[str]) -> str | None:
    """A `did you mean 'x'?` hint from the closest candidate, compared case-insensitively (`m_n` -> `m_N`)."""
    by_lower: dict[str, str] = {}
    for c in sorted(set(candidates)):
        by_lower.setdefault(c.lower(), c)
    close = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=0.6)
    return f"did you mean '{by_lower[close[0]]}'?" if close else None
