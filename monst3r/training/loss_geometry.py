"""Geometry of the training losses (spec training.md 9), batched torch: :func:`geotrf`, :func:`inv`,
:func:`normalize_pointcloud`, :func:`joint_depth_median`, :func:`joint_center_and_scale`.

(The NumPy geometry of the dataset pipeline is :mod:`monst3r.datasets.camera_geometry`; the geometry of the
reconstruction is :mod:`monst3r.utils.geometry`.) Poses are camera-to-world ``[..., 4, 4]`` in OpenCV axes.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch

__all__ = ["geotrf", "inv", "normalize_pointcloud", "joint_depth_median", "joint_center_and_scale"]


# ---------------------------------------------------------------------------------------------- torch (losses)
def geotrf(T: torch.Tensor, pts: torch.Tensor) -> torch.Tensor:
    """Apply the affine ``T [B,4,4]`` (or ``[B,3,4]``) to ``pts [B,...,3]`` -> ``[B,...,3]``."""
    B = pts.shape[0]
    R = T[:, :3, :3].to(pts.dtype)
    t = T[:, :3, 3].to(pts.dtype)
    flat = pts.reshape(B, -1, 3)
    out = torch.bmm(flat, R.transpose(1, 2)) + t[:, None, :]
    return out.reshape(pts.shape)


def inv(T: torch.Tensor) -> torch.Tensor:
    """General matrix inverse ``[..., n, n]`` (camera-to-world -> world-to-camera)."""
    return torch.linalg.inv(T)


def _masked_flat(pts: torch.Tensor, valid: Optional[torch.Tensor], fill: float) -> Tuple[torch.Tensor, torch.Tensor]:
    """``pts [B,H,W,3] -> ([B,HW,3] with invalid points set to fill, n_valid [B])``."""
    B = pts.shape[0]
    flat = pts.reshape(B, -1, 3)
    if valid is None:
        return flat, torch.full((B,), flat.shape[1], device=pts.device, dtype=pts.dtype)
    v = valid.reshape(B, -1)
    flat = torch.where(v[..., None], flat, torch.full_like(flat, fill))
    return flat, v.sum(1).to(pts.dtype)


def normalize_pointcloud(pts1: torch.Tensor, pts2: Optional[torch.Tensor], norm_mode: str = "avg_dis",
                         valid1: Optional[torch.Tensor] = None, valid2: Optional[torch.Tensor] = None
                         ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Divide a pair of point maps ``[B,H,W,3]`` by one per-item factor measured over their valid points.

    ``norm_mode = '<norm>_<dis>'``: ``dis`` is ``dis`` (distance to the origin), ``log1p`` (log(1 + d)) or
    ``warp-log1p`` (points first warped to distance log(1 + d)); ``norm`` is ``avg`` (sum / (n1 + n2 + 1e-8)),
    ``median`` (lower median over the valid points) or ``sqrt`` (square of the mean square root). The factor is
    clipped to >= 1e-8. Invalid points are scaled too (they do not contribute to the factor).
    """
    norm, dis_mode = norm_mode.split("_", 1)
    B = pts1.shape[0]
    f1, n1 = _masked_flat(pts1, valid1, 0.0)
    if pts2 is not None:
        f2, n2 = _masked_flat(pts2, valid2, 0.0)
        allp = torch.cat((f1, f2), dim=1)
        n = n1 + n2
    else:
        allp, n = f1, n1
    dis = allp.norm(dim=-1)  # [B, N]
    if dis_mode == "dis":
        pass
    elif dis_mode == "log1p":
        dis = torch.log1p(dis)
    elif dis_mode == "warp-log1p":
        log_dis = torch.log1p(dis)
        warp = log_dis / dis.clip(min=1e-8)
        n_first = pts1[0].numel() // 3
        w1 = warp[:, :n_first].reshape(pts1.shape[:-1])[..., None]
        pts1 = pts1 * w1
        if pts2 is not None:
            w2 = warp[:, n_first:].reshape(pts2.shape[:-1])[..., None]
            pts2 = pts2 * w2
        dis = log_dis
    else:
        raise ValueError(f"unknown distance mode {dis_mode!r} in norm_mode {norm_mode!r}")
    if norm == "avg":
        factor = dis.sum(dim=1) / (n + 1e-8)
    elif norm == "median":
        valid = torch.cat([(valid1 if valid1 is not None else torch.ones_like(pts1[..., 0], dtype=torch.bool)
                            ).reshape(B, -1)]
                          + ([(valid2 if valid2 is not None else torch.ones_like(pts2[..., 0], dtype=torch.bool)
                               ).reshape(B, -1)] if pts2 is not None else []), dim=1)
        factor = torch.where(valid, dis, torch.full_like(dis, float("nan"))).nanmedian(dim=1).values
    elif norm == "sqrt":
        factor = (dis.sqrt().sum(dim=1) / (n + 1e-8)) ** 2
    else:
        raise ValueError(f"unknown norm mode {norm_mode!r}")
    factor = factor.clip(min=1e-8).reshape(B, 1, 1, 1)
    return pts1 / factor, (pts2 / factor if pts2 is not None else None)


def _nan_invalid(pts: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    B = pts.shape[0]
    return _masked_flat(pts, valid, float("nan"))[0].reshape(B, -1, 3)


def joint_depth_median(pts1: torch.Tensor, pts2: torch.Tensor, valid1: torch.Tensor, valid2: torch.Tensor
                       ) -> torch.Tensor:
    """Per-item LOWER median of z over the valid points of both maps ``[B,H,W,3]`` -> ``[B]``."""
    z = torch.cat((_nan_invalid(pts1, valid1)[..., 2], _nan_invalid(pts2, valid2)[..., 2]), dim=1)
    return z.nanmedian(dim=1).values


def joint_center_and_scale(pts1: torch.Tensor, pts2: torch.Tensor, valid1: torch.Tensor, valid2: torch.Tensor
                           ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per-item centre (per-coordinate lower median, ``[B,3]``) and scale (lower median distance to it, ``[B]``)
    over the valid points of both maps."""
    pts = torch.cat((_nan_invalid(pts1, valid1), _nan_invalid(pts2, valid2)), dim=1)  # [B, N, 3]
    center = pts.nanmedian(dim=1, keepdim=True).values  # [B, 1, 3]
    scale = (pts - center).norm(dim=-1).nanmedian(dim=1).values  # [B]
    return center[:, 0], scale


# ---------------------------------------------------------------------------------------------- numpy (datasets)
