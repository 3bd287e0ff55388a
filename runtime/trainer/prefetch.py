"""Training batches built one step ahead on a background thread, pinned when they go to a CUDA device.

The loop asks for step s while step s+1's windows are being drawn; the copy to the device is non-blocking only
from pinned memory (the only case where it is asynchronous and safe).
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor

import torch

from scalec.runtime.trainer.data import Batch, ByteData


class Prefetcher:
    """`get(step)` -> that step's (x, y) on the device, for steps start, start + 1, ... < stop in order."""

    def __init__(self, data: ByteData, seqs: int, rank: int, device: torch.device, start: int, stop: int) -> None:
        self.data, self.seqs, self.rank, self.device, self.stop = data, seqs, rank, device, stop
        self.pin = device.type == "cuda"
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="scalec-batches")
        self._step = start
        self._next: Future[Batch] | None = self._pool.submit(self._make, start) if start < stop else None

    def _make(self, step: int) -> Batch:
        batch = self.data.train_batch(step, self.seqs, self.rank)
        return Batch(batch.x.pin_memory(), batch.y.pin_memory()) if self.pin else batch

    def get(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch of `step` on the device; starts drawing the next one."""
        if step != self._step or self._next is None:
            raise RuntimeError(f"batches are drawn in order: asked for step {step}, next is {self._step}")
        batch = self._next.result()
        self._step += 1
        self._next = self._pool.submit(self._make, self._step) if self._step < self.stop else None
        return batch.x.to(self.device, non_blocking=self.pin), batch.y.to(self.device, non_blocking=self.pin)

    def close(self) -> None:
        """Stop the background thread."""
        self._pool.shutdown(wait=True, cancel_futures=True)
