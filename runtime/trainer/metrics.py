"""Run-directory outputs: metrics.jsonl, atomic JSON files, optional TensorBoard, and progress display.

Progress is a rich bar (loss, tok/s, MFU, ETA) on a terminal and plain `step ...` lines otherwise.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

# Dense bf16 peaks per device (design.md): H100 SXM / H200 989 TFLOP/s, A100 312 TFLOP/s.
PEAK_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12}


def peak_flops(device: Any) -> float | None:
    """Peak bf16 FLOP/s of a known CUDA device, else None (MFU is then not reported)."""
    import torch

    if getattr(device, "type", str(device)) != "cuda" or not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_FLOPS.items() if k in name), None)


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to `path` via a temporary file and os.replace (readers never see half a file)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, allow_nan=True) + "\n")
    os.replace(tmp, path)


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # strict JSON readers choke on NaN
    return value


class MetricsLog:
    """Append-only metrics.jsonl (one JSON object per record, flushed) plus optional TensorBoard scalars."""

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
        """Drop records past `step` (written after the checkpoint a resumed run restarts from)."""
        kept = []
        for line in self.path.read_text().splitlines():
            try:
                if json.loads(line).get("step", 0) <= step:
                    kept.append(line)
            except json.JSONDecodeError:
                continue  # a line cut short by the interruption
        tmp = self.path.with_name(".metrics.jsonl.tmp")
        tmp.write_text("".join(k + "\n" for k in kept))
        os.replace(tmp, self.path)

    def log(self, record: dict[str, Any]) -> None:
        """Write one record (must hold `step`)."""
        if self._file is not None:
            self._file.write(json.dumps({k: _clean(v) for k, v in record.items()}) + "\n")
            self._file.flush()
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
        self.t0, self.start = time.perf_counter(), start
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
        """Report the state after `step` optimizer steps."""
        if not self.enabled:
            return
        info = f"loss {loss:.4f}" + (f" val {val:.4f}" if val is not None else "") + f" | {tok_s:,.0f} tok/s"
        info += f" | MFU {100 * mfu:.1f}%" if mfu is not None else ""
        if self._bar is not None:
            self._bar.update(self._task, completed=step, info=info)
        elif step % self.every == 0 or step == self.total or val is not None:
            done = max(1, step - self.start)
            eta = (time.perf_counter() - self.t0) / done * (self.total - step)
            print(f"step {step}/{self.total} {info} | eta {_fmt_eta(eta)}", file=sys.stderr, flush=True)

    def close(self) -> None:
        """Stop the bar."""
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
