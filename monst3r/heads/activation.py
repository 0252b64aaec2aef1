"""Head output activation: raw ``[B, C, H, W]`` output -> ``pts3d [B, H, W, 3]`` and ``conf [B, H, W]``.

Spec model.md 4.4. ``depth_mode = (mode, vmin, vmax)``: the original asserts infinite bounds, so vmin/vmax are
dead parameters; we raise a clear ValueError for finite bounds instead of an assertion.
"""
from __future__ import annotations

import math
from typing import Dict, Optional, Sequence

import torch


def reg_dense_depth(xyz: torch.Tensor, mode: Sequence) -> torch.Tensor:
    """``xyz [..., 3]`` -> points: 'linear' identity, 'square' ``u*d^2``, 'exp' ``u*expm1(d)`` (u = xyz/|xyz|)."""
    name, vmin, vmax = mode
    if not (vmin == -math.inf and vmax == math.inf):
        raise ValueError(f"depth_mode bounds must be (-inf, inf), got ({vmin}, {vmax})")
    if name == "linear":
        return xyz
    d = xyz.norm(dim=-1, keepdim=True)
    u = xyz / d.clip(min=1e-8)
    if name == "square":
        return u * d.square()
    if name == "exp":
        return u * torch.expm1(d)
    raise ValueError(f"unknown depth_mode {name!r} (use 'linear', 'square' or 'exp')")


def reg_dense_conf(x: torch.Tensor, mode: Sequence) -> torch.Tensor:
    """``x [...]`` -> confidence: 'exp' ``vmin + exp(x)`` clipped at ``vmax - vmin``; 'sigmoid' scaled sigmoid."""
    name, vmin, vmax = mode
    if name == "exp":
        return vmin + x.exp().clip(max=vmax - vmin)
    if name == "sigmoid":
        return (vmax - vmin) * torch.sigmoid(x) + vmin
    raise ValueError(f"unknown conf_mode {name!r} (use 'exp' or 'sigmoid')")


def postprocess(out: torch.Tensor, depth_mode: Sequence, conf_mode: Optional[Sequence]) -> Dict[str, torch.Tensor]:
    """``out [B, 3 or 4, H, W]`` -> ``{'pts3d': [B,H,W,3], 'conf': [B,H,W]}`` (conf only when conf_mode)."""
    f = out.permute(0, 2, 3, 1)
    if not f.is_contiguous():
        # NCHW head output (the linear head's pixel_shuffle): one copy to [B,H,W,C] first, so that the norm and
        # the divisions below read contiguous xyz triples instead of three planes H*W apart (CPU: ~4x faster
        # post-processing). The DPT head's output is already channels-last, and this is a no-op for it.
        f = f.contiguous()
    res = {"pts3d": reg_dense_depth(f[..., 0:3], depth_mode)}
    if conf_mode is not None:
        res["conf"] = reg_dense_conf(f[..., 3], conf_mode)
    return res
