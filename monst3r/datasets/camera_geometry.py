"""Geometry of the dataset pipeline (spec training.md 7.3, 7.4), NumPy, one view: :func:`depthmap_to_camera_points`,
:func:`depthmap_to_world_points`, :func:`opencv_to_colmap_intrinsics`, :func:`colmap_to_opencv_intrinsics`,
:func:`quat_xyzw_to_rotmat`, :func:`rigid_inverse_np`.

Conventions: poses are camera-to-world ``[4, 4]`` in OpenCV axes; intrinsics are pixel-centre-at-integer
("OpenCV") matrices ``[3, 3]``; the COLMAP convention puts pixel centres at half-integers (``c + 0.5``).
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

__all__ = ["depthmap_to_camera_points", "depthmap_to_world_points", "opencv_to_colmap_intrinsics",
           "colmap_to_opencv_intrinsics", "quat_xyzw_to_rotmat", "rigid_inverse_np"]


def opencv_to_colmap_intrinsics(K: np.ndarray) -> np.ndarray:
    """Pixel centres at integers -> at half-integers (``c + 0.5``)."""
    K = np.array(K, dtype=np.float64, copy=True)
    K[0, 2] += 0.5
    K[1, 2] += 0.5
    return K


def colmap_to_opencv_intrinsics(K: np.ndarray) -> np.ndarray:
    """Inverse of :func:`opencv_to_colmap_intrinsics`."""
    K = np.array(K, dtype=np.float64, copy=True)
    K[0, 2] -= 0.5
    K[1, 2] -= 0.5
    return K


def depthmap_to_camera_points(depth: np.ndarray, K: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """``depth [H,W]`` (z along the optical axis), ``K [3,3]`` (zero skew) -> ``(pts [H,W,3] float32,
    valid [H,W] = depth > 0)``; pixel ``(u, v)`` = (column, row) integer coordinates."""
    K = np.asarray(K, dtype=np.float64)
    if abs(K[0, 1]) > 0 or abs(K[1, 0]) > 0:
        raise ValueError("intrinsics with skew are not supported")
    H, W = depth.shape
    u, v = np.meshgrid(np.arange(W), np.arange(H))
    z = depth.astype(np.float32)
    x = (u - K[0, 2]) * z / K[0, 0]
    y = (v - K[1, 2]) * z / K[1, 1]
    return np.stack((x, y, z), axis=-1).astype(np.float32), z > 0


def depthmap_to_world_points(depth: np.ndarray, K: np.ndarray, c2w: Optional[np.ndarray], z_far: float = 0
                             ) -> Tuple[np.ndarray, np.ndarray]:
    """World point map ``[H,W,3] float32`` and validity ``[H,W]`` (``z > 0`` and ``z < z_far`` when
    ``z_far > 0``) of a depth map seen by a camera with camera-to-world pose ``c2w [4,4]``."""
    pts, valid = depthmap_to_camera_points(depth, K)
    if z_far > 0:
        valid = valid & (depth < z_far)
    if c2w is not None:
        R, t = c2w[:3, :3], c2w[:3, 3]
        pts = np.einsum("ik,vuk->vui", R, pts) + t[None, None, :]
    return pts.astype(np.float32), valid


def quat_xyzw_to_rotmat(q: np.ndarray) -> np.ndarray:
    """Unit quaternion ``(qx, qy, qz, qw)`` -> rotation matrix ``[3,3]`` (normalised first)."""
    x, y, z, w = np.asarray(q, dtype=np.float64) / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def rigid_inverse_np(T: np.ndarray) -> np.ndarray:
    """Inverse of a rigid ``[4,4]`` transform: ``[R^T, -R^T t]``."""
    T = np.asarray(T, dtype=np.float64)
    out = np.eye(4)
    out[:3, :3] = T[:3, :3].T
    out[:3, 3] = -T[:3, :3].T @ T[:3, 3]
    return out
