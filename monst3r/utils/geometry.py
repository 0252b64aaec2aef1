"""Small geometry helpers shared by the optimizer, the writers and the evaluation.

Conventions (see ``design.md``): poses are camera-to-world (c2w) 4x4 matrices in OpenCV axes (x right,
y down, z forward); pixel (u, v) = (column, row) with integer coordinates at pixel centres; the default
principal point is (W/2, H/2). Every function accepts torch tensors and, where noted, numpy arrays, and keeps
the input's device and dtype.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from monst3r.trajectory_io import c2w_to_rows, rows_to_c2w

Array = torch.Tensor | np.ndarray


# ----------------------------------------------------------------------------------------------------------
# grids and transforms
# ----------------------------------------------------------------------------------------------------------
def xy_grid(W: int, H: int, device: torch.device | str | None = None, origin: Sequence[int] = (0, 0),
            unsqueeze: int | None = None, cat_dim: int = -1, homogeneous: bool = False,
            dtype=None) -> Array:
    """Pixel coordinate grid ``[H, W, 2]`` of (u, v) = (column, row) (``[H, W, 3]`` with ``homogeneous``).

    Returns a numpy array when ``device`` is None, else a torch tensor on ``device``.
    """
    if device is None:
        arange, meshgrid, stack, ones = np.arange, np.meshgrid, np.stack, np.ones
        kw = {}
    else:
        arange = lambda *a: torch.arange(*a, device=device, dtype=dtype)  # noqa: E731
        meshgrid = lambda *a: torch.meshgrid(*a, indexing="xy")  # noqa: E731
        stack, ones = torch.stack, torch.ones
        kw = dict(device=device, dtype=dtype)
    tw, th = [arange(o, o + s) for s, o in zip((W, H), origin)]
    grid = meshgrid(tw, th)  # each [H, W]
    if homogeneous:
        grid = grid + (ones((H, W), **kw),)
    if unsqueeze is not None:
        grid = (grid[0][unsqueeze], grid[1][unsqueeze]) + tuple(g[unsqueeze] for g in grid[2:])
    if cat_dim is not None:
        grid = stack(grid, cat_dim)
    return grid


def geotrf(Trf: Array, pts: Array, ncol: int | None = None, norm: bool | float = False) -> Array:
    """Apply a homogeneous transform (or a linear map) to points.

    Trf: ``[d+1, d+1]`` / ``[d, d]``, or batched ``[*B, d+1, d+1]`` / ``[*B, d, d]``; pts: ``[*B, ..., d]``
    (leading dims matching a batched ``Trf``). Returns ``[*B, ..., ncol]``. ``norm``: divide by the last
    coordinate (``norm=1``: projection to pixels with a 3x3 ``K``). numpy and torch both work.
    """
    is_np = isinstance(Trf, np.ndarray)
    if is_np:
        pts = np.asarray(pts)
    elif isinstance(pts, np.ndarray):
        pts = torch.as_tensor(pts, device=Trf.device, dtype=Trf.dtype)
    d = pts.shape[-1]
    out_shape = pts.shape[:-1]
    ncol = ncol or d
    bdims = Trf.shape[:-2]
    flat = pts.reshape(*bdims, -1, d)
    Tt = Trf.swapaxes(-1, -2) if is_np else Trf.transpose(-1, -2)
    if Trf.shape[-1] == d + 1:
        out = flat @ Tt[..., :d, :d] + Trf[..., None, :d, d]
    elif Trf.shape[-1] == d:
        out = flat @ Tt
    else:
        raise ValueError(f"bad shapes: Trf {tuple(Trf.shape)}, pts {tuple(pts.shape)}")
    if norm:
        out = out / out[..., -1:]
        if norm is not True and norm != 1:
            out = out * norm
    out = out[..., :ncol]
    return out.reshape(*out_shape, ncol)


def inv(mat: Array) -> Array:
    """Matrix inverse for numpy arrays or torch tensors (batched)."""
    if isinstance(mat, torch.Tensor):
        return torch.linalg.inv(mat)
    if isinstance(mat, np.ndarray):
        return np.linalg.inv(mat)
    raise TypeError(f"bad matrix type: {type(mat)}")


def rigid_inverse(T: torch.Tensor) -> torch.Tensor:
    """Analytic inverse of rigid transforms ``[..., 4, 4]`` (rotation block assumed orthonormal)."""
    R = T[..., :3, :3]
    t = T[..., :3, 3:]
    Rt = R.transpose(-1, -2)
    out = torch.zeros_like(T)
    out[..., :3, :3] = Rt
    out[..., :3, 3:] = -Rt @ t
    out[..., 3, 3] = 1
    return out


def sRT_to_4x4(scale, R: torch.Tensor, T: torch.Tensor, device=None) -> torch.Tensor:
    """Similarity ``[4, 4]`` (or batched) from a scale, a rotation ``[..., 3, 3]`` and a translation ``[..., 3]``."""
    out = torch.eye(4, device=device if device is not None else R.device, dtype=R.dtype)
    out = out.expand(*R.shape[:-2], 4, 4).clone()
    scale = torch.as_tensor(scale, device=out.device, dtype=out.dtype)
    out[..., :3, :3] = R * scale[..., None, None] if scale.ndim else R * scale
    out[..., :3, 3] = T.reshape(*R.shape[:-2], 3)
    return out


# ----------------------------------------------------------------------------------------------------------
# intrinsics and depth
# ----------------------------------------------------------------------------------------------------------
def intrinsics_from_focal_pp(focals: torch.Tensor, pps: torch.Tensor) -> torch.Tensor:
    """``K [N, 3, 3]`` from focals ``[N]`` or ``[N, 1]`` (fx = fy) and principal points ``[N, 2]``."""
    f = focals.reshape(-1)
    K = torch.zeros(f.shape[0], 3, 3, device=f.device, dtype=f.dtype)
    K[:, 0, 0] = f
    K[:, 1, 1] = f
    K[:, :2, 2] = pps
    K[:, 2, 2] = 1
    return K


def inv_intrinsics(K: torch.Tensor) -> torch.Tensor:
    """Analytic inverse of pinhole intrinsics ``[..., 3, 3]`` without skew."""
    fx, fy = K[..., 0, 0], K[..., 1, 1]
    cx, cy = K[..., 0, 2], K[..., 1, 2]
    out = torch.zeros_like(K)
    out[..., 0, 0] = 1 / fx
    out[..., 1, 1] = 1 / fy
    out[..., 0, 2] = -cx / fx
    out[..., 1, 2] = -cy / fy
    out[..., 2, 2] = 1
    return out


def depthmap_to_pts3d(depth: torch.Tensor, pseudo_focal: torch.Tensor, pp: torch.Tensor | None = None
                      ) -> torch.Tensor:
    """Camera-frame points ``[B, H, W, 3]`` from depth maps ``[B, H, W]``.

    pseudo_focal: ``[B]`` / ``[B, 1]`` (fx = fy) or ``[B, 2]`` (fx, fy); pp: ``[B, 2]`` (default (W/2, H/2)).
    Point of pixel (u, v): (d (u - cx) / fx, d (v - cy) / fy, d).
    """
    B, H, W = depth.shape
    f = pseudo_focal.reshape(B, -1).to(depth.dtype)
    fx, fy = f[:, 0], f[:, -1]
    if pp is None:
        pp = torch.tensor([W / 2, H / 2], device=depth.device, dtype=depth.dtype).expand(B, 2)
    grid = xy_grid(W, H, device=depth.device, dtype=depth.dtype)  # [H, W, 2]
    x = depth * (grid[None, ..., 0] - pp[:, 0, None, None]) / fx[:, None, None]
    y = depth * (grid[None, ..., 1] - pp[:, 1, None, None]) / fy[:, None, None]
    return torch.stack((x, y, depth), dim=-1)


def depthmap_to_camera_coordinates(depthmap: np.ndarray, K: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """numpy: camera-frame points ``[H, W, 3]`` and valid mask (depth > 0) from ``[H, W]`` depth and ``K``."""
    H, W = depthmap.shape
    fu, fv, cu, cv = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    u, v = np.meshgrid(np.arange(W), np.arange(H))
    z = depthmap.astype(np.float32)
    x = (u - cu) * z / fu
    y = (v - cv) * z / fv
    return np.stack((x, y, z), axis=-1).astype(np.float32), depthmap > 0


def depthmap_to_world(depthmap: np.ndarray, K: np.ndarray, c2w: np.ndarray) -> np.ndarray:
    """numpy: world points ``[H, W, 3]`` of a depth map with intrinsics ``K`` and pose ``c2w``."""
    X, _ = depthmap_to_camera_coordinates(depthmap, K)
    return (X @ c2w[:3, :3].T + c2w[:3, 3]).astype(np.float32)


# ----------------------------------------------------------------------------------------------------------
# signed log parameterisation
# ----------------------------------------------------------------------------------------------------------
def signed_log1p(x: torch.Tensor) -> torch.Tensor:
    """sign(x) * log(1 + |x|)."""
    return torch.sign(x) * torch.log1p(torch.abs(x))


def signed_expm1(x: torch.Tensor) -> torch.Tensor:
    """sign(x) * (exp(|x|) - 1), exactly as the original: its derivative at x == 0 is 0 (torch's sign(0) = 0),
    so a component stored as exactly 0 can never move (optimizer.md section 3, bug 14.1)."""
    return torch.sign(x) * torch.expm1(torch.abs(x))


def signed_expm1_smooth(x: torch.Tensor) -> torch.Tensor:
    """Same values as :func:`signed_expm1` with the correct derivative exp(|x|) everywhere, including 1 at 0."""
    y = torch.sign(x) * torch.expm1(torch.abs(x))
    if x.requires_grad:
        zero = (x == 0).to(x.dtype)
        y = y + (x - x.detach()) * zero
    return y


# ----------------------------------------------------------------------------------------------------------
# quaternions / TUM
# ----------------------------------------------------------------------------------------------------------
def c2w_to_tumpose(c2w: np.ndarray | torch.Tensor) -> np.ndarray:
    """(x, y, z, qw, qx, qy, qz) float64 from a c2w ``[4, 4]`` (scipy quaternion, sign not canonicalised);
    one pose of :func:`monst3r.trajectory_io.c2w_to_rows`."""
    return c2w_to_rows(c2w)[0]


def tum_to_pose_matrix(tum: Sequence[float] | np.ndarray) -> np.ndarray:
    """c2w ``[4, 4]`` float64 from a TUM 7-vector (x, y, z, qw, qx, qy, qz); q and -q give the same matrix;
    one pose of :func:`monst3r.trajectory_io.rows_to_c2w`."""
    return rows_to_c2w(tum)[0]


def to_numpy(x):
    """Detach torch tensors (recursively in lists/tuples/dicts) to numpy; other values unchanged."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    if isinstance(x, (list, tuple)):
        return type(x)(to_numpy(v) for v in x)
    if isinstance(x, dict):
        return {k: to_numpy(v) for k, v in x.items()}
    return x
