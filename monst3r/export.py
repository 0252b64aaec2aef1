"""Extra export formats of a :class:`monst3r.result.Reconstruction` (``demo.py --export ply,colmap``).

* ``save_ply``: one coloured point cloud (trimesh) of the confident points of every frame, world coordinates.
* ``save_colmap``: COLMAP text model (``cameras.txt`` one PINHOLE camera per frame, ``images.txt`` world-to-camera
  poses as ``qw qx qy qz tx ty tz``, ``points3D.txt`` a subsample of the confident points). COLMAP's camera axes
  are OpenCV's, like ours, so poses only need inverting.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from monst3r.result import Reconstruction


def _points(res: Reconstruction, min_conf_thr: float, max_points: int | None, seed: int = 0):
    xyz, rgb = [], []
    masks = res.masks(min_conf_thr=min_conf_thr, use_init_conf=True)
    for k in range(res.n_frames):
        m = np.asarray(masks[k]) & (np.asarray(res.depths[k]) > 0)
        xyz.append(np.asarray(res.pts3d(k))[m])
        rgb.append((np.clip(np.asarray(res.rgb[k])[m], 0, 1) * 255).astype(np.uint8))
    xyz, rgb = np.concatenate(xyz), np.concatenate(rgb)
    if max_points is not None and len(xyz) > max_points:
        idx = np.random.default_rng(seed).choice(len(xyz), max_points, replace=False)
        xyz, rgb = xyz[idx], rgb[idx]
    return xyz.astype(np.float32), rgb


def save_ply(res: Reconstruction, path, min_conf_thr: float = 1.1) -> Path:
    """Coloured point cloud of all frames' confident points -> ``path`` (.ply)."""
    import trimesh

    xyz, rgb = _points(res, min_conf_thr, None)
    path = Path(path)
    trimesh.PointCloud(xyz, colors=rgb).export(path)
    return path


def save_colmap(res: Reconstruction, folder, min_conf_thr: float = 1.1, max_points: int = 200_000) -> Path:
    """COLMAP text model into ``folder`` (created). Image names: ``frame_%04d.png`` (the result folder's)."""
    import roma
    import torch

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "cameras.txt", "w") as f:
        f.write("# CAMERA_ID, MODEL, WIDTH, HEIGHT, fx, fy, cx, cy\n")
        for k in range(res.n_frames):
            H, W = res.frame_shape(k)
            K = res.intrinsics[k]
            f.write(f"{k + 1} PINHOLE {W} {H} {K[0, 0]:.6f} {K[1, 1]:.6f} {K[0, 2]:.6f} {K[1, 2]:.6f}\n")
    w2c = np.linalg.inv(res.poses.astype(np.float64))
    q_xyzw = roma.rotmat_to_unitquat(torch.as_tensor(w2c[:, :3, :3])).numpy()
    with open(folder / "images.txt", "w") as f:
        f.write("# IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME\n# POINTS2D (empty)\n")
        for k in range(res.n_frames):
            qx, qy, qz, qw = q_xyzw[k]
            tx, ty, tz = w2c[k, :3, 3]
            f.write(f"{k + 1} {qw:.9f} {qx:.9f} {qy:.9f} {qz:.9f} {tx:.9f} {ty:.9f} {tz:.9f} {k + 1} "
                    f"frame_{k:04d}.png\n\n")
    xyz, rgb = _points(res, min_conf_thr, max_points)
    with open(folder / "points3D.txt", "w") as f:
        f.write("# POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[]\n")
        for i, (p, c) in enumerate(zip(xyz, rgb)):
            f.write(f"{i + 1} {p[0]:.6f} {p[1]:.6f} {p[2]:.6f} {c[0]} {c[1]} {c[2]} 0\n")
    return folder
