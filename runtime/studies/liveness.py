"""Is the process that holds a run lock or a search trial still alive?

A holder is named `host:pid:start` (start = the process's start time in clock ticks on Linux, else 0), so a
pid the kernel reused for another process, or a killed child its parent has not reaped yet (a zombie, which
`kill(pid, 0)` still finds), reads as dead.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (state first), or None without /proc or the pid."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    except OSError:
        return None
    return text.rpartition(")")[2].split()


def start_token(pid: int) -> str:
    """The process's start time (clock ticks since boot) as text; '0' where /proc is unavailable."""
    fields = _stat_fields(pid)
    return fields[19] if fields and len(fields) > 19 else "0"


def holder_id(pid: int | None = None) -> str:
    """`host:pid:start` of this process (or of `pid` on this host)."""
    pid = os.getpid() if pid is None else pid
    return f"{socket.gethostname()}:{pid}:{start_token(pid)}"


def pid_alive(pid: int, start: str | None = None) -> bool:
    """True while `pid` runs (not a zombie) and, when `start` is given and known, is the process that began then."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    fields = _stat_fields(pid)
    if fields is None:
        return Path("/proc").is_dir() is False  # no /proc: trust kill(0); with /proc the pid vanished
    if fields[0] in ("Z", "X"):
        return False
    return start in (None, "0") or start_token(pid) in ("0", start)


def holder_alive(holder: str) -> bool | None:
    """Whether the holder `host:pid[:start]` is alive; None when it names another host (cannot tell) or is
    malformed."""
    parts = holder.split(":")
    if len(parts) == 2:
        parts.append("0")
    if len(parts) != 3 or not parts[1].isdigit():
        return None
    host, pid, start = parts
    if host != socket.gethostname():
        return None
    return pid_alive(int(pid), start)
