"""Wall time per named stage: the one timer of the pipeline (load, inference, ...) and of the optimizer phases
(flows, self_masks, sam2, init, loop)."""
from __future__ import annotations

import contextlib
import time
from typing import Dict, Iterator, Optional

import torch


class StageTimer:
    """Accumulates seconds per stage name in :attr:`times`; ``with timer("name"): ...`` times one block.

    device: when a CUDA device is given, the device is synchronised at both ends of every block, so that the time
    of asynchronous kernels lands in the stage that launched them (once per block, not per kernel)."""

    def __init__(self, device: Optional[torch.device | str] = None, times: Optional[Dict[str, float]] = None):
        self.device = torch.device(device) if device is not None else None
        self.times: Dict[str, float] = {} if times is None else times

    def _sync(self) -> None:
        if self.device is not None and self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        self._sync()
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self._sync()
            self.times[name] = self.times.get(name, 0.0) + time.perf_counter() - t0

    def summary(self) -> str:
        """``"load 1.2s, inference 3.4s"``."""
        return ", ".join(f"{k} {v:.1f}s" for k, v in self.times.items())
