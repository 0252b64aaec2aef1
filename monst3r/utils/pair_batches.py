"""Pair batches of the network (spec model.md 3.8): :func:`is_symmetrized` (is a batch of mirror pairs),
:func:`interleave` (``[a..], [b..] -> [a0,b0,..], [b0,a0,..]``), :func:`transposed` (swap H and W of predictions).

Module set-up helpers of the network are in :mod:`monst3r.utils.module_setup`. (``cloud_opt``'s
``is_symmetrized(edges)`` answers the same question for a pair graph's edge list.)"""
from __future__ import annotations

from typing import Dict, Tuple

import torch


def is_symmetrized(view1: Dict, view2: Dict) -> bool:
    """True when the batch is interleaved mirror pairs: view1 = [a0, b0, a1, b1, ...], view2 = [b0, a0, ...].

    Requires an even length > 1 and checks every pair (fixes the original's IndexError on odd batches).
    """
    x, y = view1.get("instance"), view2.get("instance")
    if x is None or y is None or len(x) != len(y) or len(x) < 2 or len(x) % 2:
        return False
    return all(x[i] == y[i + 1] and x[i + 1] == y[i] for i in range(0, len(x), 2))


def interleave(t1: torch.Tensor, t2: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """``([a0,a1..], [b0,b1..]) -> ([a0,b0,a1,b1..], [b0,a0,b1,a1..])`` along dim 0."""
    return torch.stack((t1, t2), dim=1).flatten(0, 1), torch.stack((t2, t1), dim=1).flatten(0, 1)


def transposed(d: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Swap axes 1 and 2 of every value (``[B,H,W,...] -> [B,W,H,...]``)."""
    return {k: v.swapaxes(1, 2) for k, v in d.items()}
