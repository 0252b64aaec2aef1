"""Sampler that gives every batch one aspect-ratio index (spec training.md 6.4)."""
from __future__ import annotations

from typing import Iterator, Optional, Sized, Tuple

import numpy as np
import torch


class BatchedRandomSampler:
    """Yields ``(item index, aspect-ratio index)`` tuples; each run of ``batch_size`` consecutive tuples shares one
    aspect-ratio index, so the DataLoader's ``batch_size`` must equal this one.

    ``total = (N // (batch_size * world)) * batch_size * world`` with ``drop_last`` (required when distributed),
    else N. Order: ``rng = default_rng(epoch + 777)`` after :meth:`set_epoch` (identical on every rank), else a
    random seed from torch (single process only); the shuffled rows are split into contiguous per-rank slices.
    """

    def __init__(self, dataset: Sized, batch_size: int, pool_size: int, world_size: int = 1, rank: int = 0,
                 drop_last: bool = True):
        if not (world_size == 1 or drop_last):
            raise ValueError("the batched sampler needs drop_last=True when distributed")
        self.batch_size = int(batch_size)
        self.pool_size = int(pool_size)
        self.len_dataset = N = len(dataset)
        self.total_size = (N // (self.batch_size * world_size)) * self.batch_size * world_size if drop_last else N
        self.world_size = world_size
        self.rank = rank
        self.epoch: Optional[int] = None

    def __len__(self) -> int:
        return self.total_size // self.world_size

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[Tuple[int, int]]:
        if self.epoch is None:
            if self.world_size != 1 or self.rank != 0:
                raise RuntimeError("call set_epoch() before iterating a distributed batched sampler")
            seed = int(torch.empty((), dtype=torch.int64).random_().item())
        else:
            seed = self.epoch + 777
        rng = np.random.default_rng(seed=seed)
        sample_idxs = np.arange(self.total_size)
        rng.shuffle(sample_idxs)
        n_batches = (self.total_size + self.batch_size - 1) // self.batch_size
        feat = rng.integers(self.pool_size, size=n_batches)
        feat = np.repeat(feat, self.batch_size)[: self.total_size]
        per_proc = self.batch_size * ((self.total_size + self.world_size * self.batch_size - 1)
                                      // (self.world_size * self.batch_size))
        lo, hi = self.rank * per_proc, (self.rank + 1) * per_proc
        for i, a in zip(sample_idxs[lo:hi], feat[lo:hi]):
            yield int(i), int(a)
