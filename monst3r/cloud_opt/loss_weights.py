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


def get_dist(name: str) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
    """The point distance ``name`` ('l1' or 'l2') of :data:`ALL_DISTS`; ValueError otherwise."""
    if name not in ALL_DISTS:
        raise ValueError(f"bad dist {name!r}; use one of {sorted(ALL_DISTS)}")
    return ALL_DISTS[name]


FLOW_LOSS_FNS = ("smooth_l1", "mse")


def check_flow_loss_fn(name: str) -> str:
    """``name`` when it is a flow loss of :data:`FLOW_LOSS_FNS`; ValueError otherwise."""
    if name not in FLOW_LOSS_FNS:
        raise ValueError(f"bad flow_loss_fn {name!r}; use 'smooth_l1' or 'mse'")
    return name
