"""Dataset combinators (spec training.md 6.3): ``N @ ds`` (resize to N items), ``k * ds`` (repeat each item k
times), ``ds1 + ds2`` (concatenate).

Items are indexed by an int or by ``(index, aspect_ratio_index)`` (what :class:`BatchedRandomSampler` yields);
the aspect-ratio part is passed through unchanged to the underlying view dataset.
"""
from __future__ import annotations

from typing import Any, List, Sequence, Tuple, Union

import numpy as np

from monst3r.datasets.base.batched_sampler import BatchedRandomSampler

Index = Union[int, Tuple[int, int]]

#: Text of the default ``ImgNorm`` transform in a dataset's repr; concatenations leave it out (as the original).
DEFAULT_TRANSFORM_REPR = ",transform=Compose( ToTensor() Normalize(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)))"


class EasyDataset:
    """Base of every training dataset: operators, ``set_epoch`` and the aspect-ratio-aware sampler."""

    _resolutions: List[Tuple[int, int]]

    def __add__(self, other: "EasyDataset") -> "CatDataset":
        if not isinstance(other, EasyDataset):
            return NotImplemented
        return CatDataset([self, other])

    def __rmul__(self, factor: int) -> "MulDataset":
        if isinstance(factor, bool) or not isinstance(factor, int):
            return NotImplemented
        return MulDataset(factor, self)

    def __rmatmul__(self, factor: int) -> "ResizedDataset":
        if isinstance(factor, bool) or not isinstance(factor, int):
            return NotImplemented
        return ResizedDataset(factor, self)

    def set_epoch(self, epoch: int) -> None:
        pass

    def make_sampler(self, batch_size: int, shuffle: bool = True, world_size: int = 1, rank: int = 0,
                     drop_last: bool = True) -> BatchedRandomSampler:
        """The batched aspect-ratio sampler (shuffled only; raises NotImplementedError for ``shuffle=False``)."""
        if not shuffle:
            raise NotImplementedError("the batched sampler always shuffles")
        return BatchedRandomSampler(self, batch_size, len(self._resolutions), world_size=world_size, rank=rank,
                                    drop_last=drop_last)


def _split_index(idx: Index) -> Tuple[int, Any]:
    if isinstance(idx, tuple):
        return int(idx[0]), idx[1]
    return int(idx), None


def _join_index(i: int, other: Any) -> Index:
    return i if other is None else (i, other)


class MulDataset(EasyDataset):
    """``k * ds``: ``len = k * len(ds)``; item ``i`` is ``ds[i // k]``."""

    def __init__(self, multiplicator: int, dataset: EasyDataset):
        if isinstance(multiplicator, bool) or not isinstance(multiplicator, int) or multiplicator <= 0:
            raise ValueError(f"the repetition factor must be a positive integer, got {multiplicator!r}")
        self.multiplicator = multiplicator
        self.dataset = dataset

    def __len__(self) -> int:
        return self.multiplicator * len(self.dataset)

    def __repr__(self) -> str:
        return f"{self.multiplicator}*{self.dataset!r}"

    def __getitem__(self, idx: Index):
        i, other = _split_index(idx)
        return self.dataset[_join_index(i // self.multiplicator, other)]

    def set_epoch(self, epoch: int) -> None:
        self.dataset.set_epoch(epoch)

    @property
    def _resolutions(self):
        return self.dataset._resolutions


class ResizedDataset(EasyDataset):
    """``N @ ds``: exactly N items. After ``set_epoch(e)``, ``perm = default_rng(e + 777).permutation(len(ds))``
    and item ``i`` is ``ds[concat([perm] * reps)[i]]`` (a subset without repetition when N <= len(ds))."""

    def __init__(self, new_size: int, dataset: EasyDataset):
        if isinstance(new_size, bool) or not isinstance(new_size, int) or new_size <= 0:
            raise ValueError(f"the size on the left of @ must be a positive integer, got {new_size!r}")
        self.new_size = new_size
        self.dataset = dataset
        self._idxs_mapping = None

    def __len__(self) -> int:
        return self.new_size

    def __repr__(self) -> str:
        return f"{self.new_size:_} @ {self.dataset!r}"

    def set_epoch(self, epoch: int) -> None:
        n = len(self.dataset)
        if n == 0:
            raise ValueError(f"cannot draw {self.new_size} items from an empty dataset: {self.dataset!r}")
        perm = np.random.default_rng(seed=epoch + 777).permutation(n)
        reps = 1 + (len(self) - 1) // n
        self._idxs_mapping = np.concatenate([perm] * reps)[: self.new_size]
        self.dataset.set_epoch(epoch)

    def __getitem__(self, idx: Index):
        if self._idxs_mapping is None:
            raise RuntimeError("call set_epoch(epoch) on a resized dataset (N @ ds) before reading items")
        i, other = _split_index(idx)
        if not 0 <= i < self.new_size:
            raise IndexError(f"index {i} out of range for a dataset of {self.new_size} items")
        return self.dataset[_join_index(int(self._idxs_mapping[i]), other)]

    @property
    def _resolutions(self):
        return self.dataset._resolutions


class CatDataset(EasyDataset):
    """``ds1 + ds2 + ...``: concatenation; every member must have the same resolutions."""

    def __init__(self, datasets: Sequence[EasyDataset]):
        for d in datasets:
            if not isinstance(d, EasyDataset):
                raise TypeError(f"cannot concatenate {type(d).__name__}: not a dataset")
        self.datasets = list(datasets)
        self._cum_sizes = np.cumsum([len(d) for d in self.datasets])

    def __len__(self) -> int:
        return int(self._cum_sizes[-1])

    def __repr__(self) -> str:
        return " + ".join(repr(d).replace(DEFAULT_TRANSFORM_REPR, "") for d in self.datasets)

    def set_epoch(self, epoch: int) -> None:
        for d in self.datasets:
            d.set_epoch(epoch)

    def __getitem__(self, idx: Index):
        i, other = _split_index(idx)
        if not 0 <= i < len(self):
            raise IndexError(f"index {i} out of range for a dataset of {len(self)} items")
        db = int(np.searchsorted(self._cum_sizes, i, "right"))
        local = i - (int(self._cum_sizes[db - 1]) if db > 0 else 0)
        return self.datasets[db][_join_index(local, other)]

    @property
    def _resolutions(self):
        res = self.datasets[0]._resolutions
        for d in self.datasets[1:]:
            if tuple(map(tuple, d._resolutions)) != tuple(map(tuple, res)):
                raise ValueError(f"all concatenated datasets must share the resolutions: {res} vs {d._resolutions}")
        return res
