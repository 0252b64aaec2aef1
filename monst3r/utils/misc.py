"""Small helpers of the network (spec model.md 3.8)."""
from __future__ import annotations

import inspect
from typing import Dict, Sequence, Tuple

import torch


def fill_default_args(kwargs: Dict, func) -> Dict:
    """Add every defaulted parameter of ``func``'s signature missing from ``kwargs`` (in place); returns it."""
    for name, p in inspect.signature(func).parameters.items():
        if p.default is not inspect.Parameter.empty and name not in kwargs:
            kwargs[name] = p.default
    return kwargs


def freeze_all_params(modules: Sequence) -> None:
    """``requires_grad=False`` on every parameter of each module (or on a bare Parameter)."""
    for m in modules:
        if isinstance(m, torch.nn.Parameter):
            m.requires_grad = False
        else:
            for p in m.parameters():
                p.requires_grad = False


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
