"""Run-directory outputs: metrics.jsonl, atomic JSON files, optional TensorBoard, and progress display.

Progress is a rich bar (loss, tok/s, MFU, ETA) on a terminal and plain `step ...` lines otherwise.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from scalec.errors import ScalecError
from scalec.runtime.atomic_io import ReadError, parse_json, write_error, write_text_atomic

# Dense bf16 peaks per device (design.md): H100 SXM / H200 989 TFLOP/s, A100 312 TFLOP/s.
PEAK_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12}


def peak_flops(device: Any) -> float | None:
    """Peak bf16 FLOP/s of a known CUDA device, else None (MFU is then not reported)."""
    import torch

    if getattr(device, "type", str(device)) != "cuda" or not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_FLOPS.items() if k in name), None)


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # strict JSON readers choke on NaN
    return value


class MetricsError(ScalecError):
    """A metrics.jsonl that cannot be resumed."""


class MetricsLog:
    """Append-only metrics.jsonl (one JSON object per log step, flushed) plus optional TensorBoard scalars."""

    def __init__(self, out_dir: Path | None, tensorboard: bool = False, keep_until_step: int | None = None) -> None:
        self.path = out_dir / "metrics.jsonl" if out_dir else None
        self._file = None
        self._tb = None
        if self.path is None:
            return
        if keep_until_step is not None and self.path.exists():
            self._truncate(keep_until_step)
        elif keep_until_step is None and self.path.exists():
            self.path.unlink()
        self._file = self.path.open("a")
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                print(
                    "warning: tensorboard is not installed (pip install tensorboard); logging to metrics.jsonl only",
                    file=sys.stderr,
                )
            else:
                self._tb = SummaryWriter(str(out_dir / "tb"))

    def _truncate(self, step: int) -> None:
        """Drop records past `step` (written after the checkpoint a resumed run restarts from); every record kept
        must be a JSON object with a whole-number `step` (only a last line cut short by an interruption is dropped)."""
        lines = self.path.read_text(errors="replace").splitlines()
        kept = []
        fix = "fix or move the file away to resume, or pass another --out"
        for i, line in enumerate(lines, 1):
            try:
                record = parse_json(line, f"{self.path}:{i}", fix)
            except ReadError:
                if i == len(lines) and line.startswith("{") and len(line) < 4096:
                    continue  # a record an interruption (or a full disk) cut short
                raise
            at = record.get("step") if isinstance(record, dict) else None
            if not isinstance(at, int) or isinstance(at, bool):
                raise MetricsError(
                    f"error: {self.path}:{i} is not a metrics record (a JSON object with a whole-number step); "
                    "fix or move the file away to resume, or pass another --out"
                )
            if at <= step:
                kept.append(line)
        write_text_atomic(self.path, "".join(k + "\n" for k in kept))

    def log(self, record: dict[str, Any]) -> None:
        """Write one record (must hold `step`)."""
        if self._file is not None:
            line = json.dumps({k: _clean(v) for k, v in record.items()}) + "\n"
            try:
                self._file.write(line)
                self._file.flush()
            except OSError as exc:  # a full disk: the resume drops the cut-short line
                raise write_error(self.path, exc, len(line)) from None
        if self._tb is not None:
            for k, v in record.items():
                if k != "step" and isinstance(v, (int, float)):
                    self._tb.add_scalar(k, v, record["step"])

    def close(self) -> None:
        """Flush and close."""
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None


def _fmt_eta(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Progress:
    """Training progress: a rich bar on a terminal, plain lines every `every` steps otherwise, or nothing."""

    def __init__(self, total: int, start: int, enabled: bool, every: int, title: str) -> None:
        self.total, self.every, self.enabled = total, max(1, every), enabled
        self.t0, self.start, self._printed = time.perf_counter(), start, start
        self._bar = None
        if enabled and sys.stderr.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[info]}"),
                TimeRemainingColumn(),
                transient=False,
            )
            self._task = self._bar.add_task(title, total=total, completed=start, info="")
            self._bar.start()
        elif enabled:
            print(f"{title}: {total} steps", file=sys.stderr, flush=True)

    def update(self, step: int, loss: float, tok_s: float, mfu: float | None, val: float | None = None) -> None:
        """Report the state after `step` optimizer steps (called at log steps; plain lines `every` steps apart)."""
        if not self.enabled:
            return
        info = f"loss {loss:.4f}" + (f" val {val:.4f}" if val is not None else "") + f" | {tok_s:,.0f} tok/s"
        info += f" | MFU {100 * mfu:.1f}%" if mfu is not None else ""
        if self._bar is not None:
            self._bar.update(self._task, completed=step, info=info)
        elif step - self._printed >= self.every or step == self.total or val is not None:
            self._printed = step
            done = max(1, step - self.start)
            eta = (time.perf_counter() - self.t0) / done * (self.total - step)
            print(f"step {step}/{self.total} {info} | eta {_fmt_eta(eta)}", file=sys.stderr, flush=True)

    def close(self) -> None:
        """Stop the bar."""
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


class Throughput:
    """Tokens per second between log steps, leaving out the first step of a process (compilation, warm-up) and
    the time spent at log steps themselves (evaluation, logging, checkpoints). Call `at_log` right after the host
    has read the device (so the device's work is done) and `resume` when the log step's own work is over."""

    def __init__(self, tokens_per_step: int, step: int) -> None:
        self.tokens_per_step, self._step = tokens_per_step, step
        self._t = time.perf_counter()
        self._warm, self._seconds, self._tokens = False, 0.0, 0

    def at_log(self, step: int) -> float:
        """Tokens/s so far (the first interval alone until a second one is measured)."""
        seconds, tokens = time.perf_counter() - self._t, (step - self._step) * self.tokens_per_step
        self._step = step
        if self._warm:
            self._seconds, self._tokens = self._seconds + seconds, self._tokens + tokens
        self._warm = True
        return self._tokens / self._seconds if self._seconds else tokens / max(seconds, 1e-9)

    def resume(self) -> None:
        """Start the next interval."""
        self._t = time.perf_counter()
