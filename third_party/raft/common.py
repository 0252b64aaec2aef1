"""Pieces shared by SEA-RAFT and classic RAFT: pixel grids, the correlation pyramid and convex upsampling.

Written from the RAFT paper (Teed & Deng, ECCV 2020) and ``shared/spec/third_party.md`` §2.5, §2.8.
"""
from __future__ import annotations

import math
from typing import List

import torch
import torch.nn.functional as F


def coords_grid(batch: int, ht: int, wd: int, device: torch.device, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Pixel coordinates ``[B, 2, H, W]``; channel 0 = x (column index), channel 1 = y (row index)."""
    ys, xs = torch.meshgrid(
        torch.arange(ht, device=device, dtype=dtype), torch.arange(wd, device=device, dtype=dtype), indexing="ij"
    )
    return torch.stack([xs, ys], dim=0)[None].expand(batch, 2, ht, wd)


def convex_upsample(field: torch.Tensor, mask: torch.Tensor, factor: int = 8) -> torch.Tensor:
    """Convex upsampling of a coarse field by a learned 3x3 combination.

    Args:
        field: ``[N, C, h, w]`` coarse field (multiply flow by ``factor`` before calling).
        mask: ``[N, 9 * factor**2, h, w]`` mask logits; channel ``k * f^2 + r * f + s`` weights neighbour ``k``
            (row-major 3x3) for sub-pixel ``(r, s)``.

    Returns:
        ``[N, C, factor * h, factor * w]``.
    """
    n, c, h, w = field.shape
    mask = torch.softmax(mask.view(n, 1, 9, factor, factor, h, w), dim=2)
    neigh = F.unfold(field, [3, 3], padding=1).view(n, c, 9, 1, 1, h, w)
    up = torch.sum(mask * neigh, dim=2)  # [N, C, f, f, h, w]
    return up.permute(0, 1, 4, 2, 5, 3).reshape(n, c, factor * h, factor * w)


def _window_offsets(radius: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Offsets ``[(2r+1)^2, 2]`` as (dx, dy) with dx the slow index (RAFT's channel layout)."""
    d = torch.arange(-radius, radius + 1, device=device, dtype=dtype)
    dx, dy = torch.meshgrid(d, d, indexing="ij")
    return torch.stack([dx, dy], dim=-1).reshape(-1, 2)


class CorrPyramid:
    """All-pairs correlation volume with ``num_levels`` average-pooled levels and a windowed lookup.

    ``C_0[n, y1, x1, y2, x2] = <f1[n, :, y1, x1], f2[n, :, y2, x2]> / sqrt(D)``; level ``l + 1`` is the 2x2 average
    pooling (floor size) of level ``l`` over ``(y2, x2)`` -- equal to correlating with a bilinearly halved ``f2``
    as SEA-RAFT does, since the volume is linear in ``f2``.

    Args:
        fmap1, fmap2: ``[B, D, h, w]`` feature maps.
        num_levels: pyramid levels (4).
        radius: lookup radius r; the lookup returns ``num_levels * (2r+1)^2`` channels.
    """

    def __init__(self, fmap1: torch.Tensor, fmap2: torch.Tensor, num_levels: int = 4, radius: int = 4) -> None:
        b, d, h, w = fmap1.shape
        h2, w2 = fmap2.shape[-2:]
        self.num_levels, self.radius = num_levels, radius
        corr = torch.matmul(fmap1.reshape(b, d, h * w).transpose(1, 2), fmap2.reshape(b, d, h2 * w2))
        corr = (corr / math.sqrt(d)).reshape(b * h * w, 1, h2, w2)
        self.pyramid: List[torch.Tensor] = [corr]
        for _ in range(num_levels - 1):
            corr = F.avg_pool2d(corr, 2, stride=2)
            self.pyramid.append(corr)

    def __call__(self, coords: torch.Tensor) -> torch.Tensor:
        """Look up ``[B, 2, h, w]`` positions (x, y in level-0 pixels) -> ``[B, L * (2r+1)^2, h, w]`` float32.

        Channel ``l * (2r+1)^2 + (dx + r) * (2r+1) + (dy + r)`` holds level ``l`` sampled bilinearly
        (``align_corners=True``, zeros outside) at ``coords / 2^l + (dx, dy)``.
        """
        b, _, h, w = coords.shape
        k = 2 * self.radius + 1
        centre = coords.permute(0, 2, 3, 1).reshape(b * h * w, 1, 1, 2)
        offsets = _window_offsets(self.radius, coords.device, coords.dtype).view(1, k, k, 2)
        out = []
        for level, corr in enumerate(self.pyramid):
            pos = centre / 2**level + offsets  # [BHW, k, k, 2], (x, y)
            hl, wl = corr.shape[-2:]
            gx = 2 * pos[..., 0] / (wl - 1) - 1
            gy = 2 * pos[..., 1] / (hl - 1) - 1
            sampled = F.grid_sample(corr, torch.stack([gx, gy], dim=-1), mode="bilinear", align_corners=True)
            out.append(sampled.view(b, h, w, k * k))
        return torch.cat(out, dim=-1).permute(0, 3, 1, 2).contiguous().float()
