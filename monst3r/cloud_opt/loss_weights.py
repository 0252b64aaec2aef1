"""Confidence transforms (confidence -> loss weight) and the point distances of the alignment term
(optimizer.md sections 4.1 and 5.1)."""
from __future__ import annotations

from typing import Callable

import torch


def get_conf_trf(mode: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """Confidence transform: 'log' (default), 'sqrt', 'm1' (c - 1), 'id'/'none'."""
    if mode == "log":
        return torch.log
    if mode == "sqrt":
        return torch.sqrt
    if mode == "m1":
        return lambda x: x - 1
    if mode in ("id", "none"):
        return lambda x: x
    raise ValueError(f"bad conf mode {mode!r}; use one of log, sqrt, m1, id, none")


def l1_dist(a: torch.Tensor, b: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Euclidean distance ``|a - b|_2`` (over the last dim) times ``weight`` (named 'l1' by the original)."""
    return torch.linalg.vector_norm(a - b, dim=-1) * weight


def l2_dist(a: torch.Tensor, b: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distance times ``weight``."""
    return (a - b).square().sum(dim=-1) * weight


ALL_DISTS = dict(l1=l1_dist, l2=l2_dist)
