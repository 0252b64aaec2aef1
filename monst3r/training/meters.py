"""Training meters: :class:`SmoothedValue` (window + global average, synchronised over processes) and
:class:`MetricLogger` (named meters)."""
from __future__ import annotations

from collections import defaultdict, deque
from typing import Dict

import torch
import torch.distributed as dist

from monst3r.runtime import comm_device, get_world_size


class SmoothedValue:
    """Window of recent values plus global count/total. ``median`` is torch's LOWER median of the window."""

    def __init__(self, window_size: int = 20, fmt: str = "{median:.4f} ({global_avg:.4f})"):
        self.deque: deque = deque(maxlen=window_size)
        self.total = 0.0
        self.count = 0
        self.fmt = fmt

    def update(self, value: float, n: int = 1) -> None:
        self.deque.append(value)
        self.count += n
        self.total += value * n

    def synchronize_between_processes(self) -> None:
        """All-reduce count and total only (the window stays per process)."""
        if get_world_size() == 1:
            return
        t = torch.tensor([self.count, self.total], dtype=torch.float64, device=comm_device())
        dist.barrier()
        dist.all_reduce(t)
        self.count, self.total = int(t[0].item()), float(t[1].item())

    @property
    def median(self) -> float:
        return float(torch.tensor(list(self.deque)).median().item()) if self.deque else float("nan")

    @property
    def avg(self) -> float:
        return float(torch.tensor(list(self.deque), dtype=torch.float32).mean().item()) if self.deque else float("nan")

    @property
    def global_avg(self) -> float:
        return self.total / self.count if self.count else float("nan")

    @property
    def value(self) -> float:
        return self.deque[-1] if self.deque else float("nan")

    def __str__(self) -> str:
        return self.fmt.format(median=self.median, avg=self.avg, global_avg=self.global_avg, value=self.value)


class MetricLogger:
    """Named :class:`SmoothedValue` meters."""

    def __init__(self, delimiter: str = "  ", window_size: int = 20):
        self.meters: Dict[str, SmoothedValue] = defaultdict(lambda: SmoothedValue(window_size))
        self.delimiter = delimiter

    def update(self, **kwargs: float) -> None:
        for k, v in kwargs.items():
            if v is None:
                continue
            if isinstance(v, torch.Tensor):
                v = v.item()
            self.meters[k].update(float(v))

    def synchronize_between_processes(self) -> None:
        for m in self.meters.values():
            m.synchronize_between_processes()

    def __str__(self) -> str:
        return self.delimiter.join(f"{k}: {m}" for k, m in self.meters.items())
