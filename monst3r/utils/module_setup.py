"""Set-up helpers of the network's modules (spec model.md 3.8): :func:`fill_default_args` (complete a kwargs dict
from a signature), :func:`freeze_all_params` (``requires_grad=False``)."""
from __future__ import annotations

import inspect
from typing import Dict, Sequence

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
