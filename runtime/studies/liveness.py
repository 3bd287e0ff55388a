"""Is the process that holds a run lock or a search trial still alive? And the signals that end a search.

A holder is named `host:pid:start` (start = the process's start time in clock ticks on Linux, else 0), so a
pid the kernel reused for another process, or a killed child its parent has not reaped yet (a zombie, which
`kill(pid, 0)` still finds), reads as dead.

A search parent turns SIGTERM and SIGHUP into `Terminated` (so it stops its workers on the way out), and each
worker it starts dies with it: on Linux the kernel sends the worker SIGTERM when the parent dies, even by SIGKILL
(prctl PR_SET_PDEATHSIG); elsewhere a thread watches the parent's pid.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

PR_SET_PDEATHSIG = 1
ENDING_SIGNALS = tuple(getattr(signal, n) for n in ("SIGTERM", "SIGHUP") if hasattr(signal, n))


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP reached a process that must clean up on its way out (raised like Ctrl-C)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextlib.contextmanager
def signals_raise() -> Iterator[None]:
    """Within the block (main thread only), SIGTERM and SIGHUP raise Terminated instead of ending the process at
    once, so `finally` clauses (stopping child processes) run; the previous handlers come back afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise Terminated(signum)

    previous = {s: signal.signal(s, handler) for s in ENDING_SIGNALS}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def die_with_parent(parent_pid: int) -> None:
    """End this process (SIGTERM) when `parent_pid`, its parent, dies, however it dies; at once if it already has."""
    armed = False
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            armed = libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) == 0
        except (OSError, AttributeError):
            armed = False
    if os.getppid() != parent_pid:  # the parent died before the request was in place
        os.kill(os.getpid(), signal.SIGTERM)
    if not armed:

        def watch() -> None:
            while os.getppid() == parent_pid:
                time.sleep(0.5)
            os.kill(os.getpid(), signal.SIGTERM)

        threading.Thread(target=watch, name="parent-watch", daemon=True).start()


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
