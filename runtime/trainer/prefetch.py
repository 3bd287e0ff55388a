"""Training batches built one step ahead on a background thread and pinned, when they go to a CUDA device.

On CUDA the loop asks for step s while step s+1's windows are being drawn, and the copy to the device is
non-blocking from pinned memory (the only case where it is asynchronous and safe). On CPU there is no device to
overlap with: batches are drawn in the loop's own thread, where a second thread would only compete for cores.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import torch

from scalec.runtime.trainer.data import Batch, ByteData


class Prefetcher:
    """`get(step)` -> that step's (x, y) on the device, for steps start, start + 1, ... < stop in order."""

    def __init__(
        self,
        data: ByteData,
        seqs: int,
        rank: int,
        device: torch.device,
        start: int,
        stop: int,
        background: bool | None = None,
    ) -> None:
        """`background`: draw on a second thread (default: on CUDA only)."""
        self.data, self.seqs, self.rank, self.device, self.stop = data, seqs, rank, device, stop
        self.pin = device.type == "cuda"
        background = self.pin if background is None else background
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="scalec-batches") if background else None
        self._step = start
        self._next: Future[Batch] | int | None = self._submit(start)

    def _submit(self, step: int) -> Any:
        if step >= self.stop:
            return None
        return self._pool.submit(self._make, step) if self._pool is not None else step

    def _make(self, step: int) -> Batch:
        batch = self.data.train_batch(step, self.seqs, self.rank)
        return Batch(batch.x.pin_memory(), batch.y.pin_memory()) if self.pin else batch

    def get(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch of `step` on the device; starts drawing the next one."""
        if step != self._step or self._next is None:
            raise RuntimeError(f"batches are drawn in order: asked for step {step}, next is {self._step}")
        batch = self._next.result() if self._pool is not None else self._make(step)
        self._step += 1
        self._next = self._submit(self._step)
        return batch.x.to(self.device, non_blocking=self.pin), batch.y.to(self.device, non_blocking=self.pin)

    def close(self) -> None:
        """Stop the background thread."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
