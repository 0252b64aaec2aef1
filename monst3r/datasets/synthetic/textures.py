"""Procedural textures and rigid primitives of :mod:`monst3r.datasets.synthetic` (NumPy only).

:class:`Texture`: a fractal colour-noise tile with a smooth checker, mip-mapped and sampled trilinearly from the
pixel footprint; :class:`Primitive`: a textured plane, box or sphere with its rigid motion over time.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import scipy.fft

# --------------------------------------------------------------------------------------------- geometry helpers


def rotation(axis: np.ndarray, angle: float) -> np.ndarray:
    """Rodrigues: ``[3,3]`` rotation of ``angle`` radians about the unit ``axis``."""
    x, y, z = axis / np.linalg.norm(axis)
    k = np.array([[0, -z, y], [z, 0, -x], [-y, x, 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * (k @ k)


def look_at(position: np.ndarray, target: np.ndarray, roll: float) -> np.ndarray:
    """c2w rotation (OpenCV axes) looking from ``position`` at ``target`` with world +y as 'down', then roll."""
    fwd = target - position
    fwd = fwd / np.linalg.norm(fwd)
    right = np.cross(np.array([0.0, 1.0, 0.0]), fwd)
    right /= np.linalg.norm(right)
    down = np.cross(fwd, right)
    rot = np.stack([right, down, fwd], axis=1)
    return rot @ rotation(np.array([0.0, 0.0, 1.0]), roll)


class Texture:
    """Periodic colour texture tile with mipmaps, sampled triplanarly in object coordinates.

    The tile (``TEXELS`` x ``TEXELS`` RGB covering ``tile`` scene units) is fractal colour noise made by spectral
    synthesis (white noise shaped by a ``1/f^0.8`` amplitude spectrum, so every scale from the tile size down to
    two texels carries detail) plus a smooth checker. Lookups are trilinear in a mip pyramid chosen from the
    pixel footprint, so textures stay band-limited (no aliasing, stable under motion) at any resolution.
    A point with normal ``n`` samples the planes orthogonal to the axes weighted by ``|n_a|^4`` (one plane for
    the faces of boxes and of the room, a seamless blend on spheres); each (axis, side) uses its own offset into
    the tile so that different faces look different.
    """

    TEXELS = 512

    def __init__(self, rng: np.random.Generator, base_color: np.ndarray, tile: float = 4.0,
                 face_tints: Optional[np.ndarray] = None):
        size = self.TEXELS
        white = rng.standard_normal((3, size, size)).astype(np.float32)
        fy = np.fft.fftfreq(size)[:, None] * size
        fx = np.fft.rfftfreq(size)[None, :] * size
        radius = np.sqrt(fx ** 2 + fy ** 2)
        shaping = np.where(radius >= 1, np.maximum(radius, 1) ** -0.8, 0.0)
        noise = scipy.fft.irfft2(scipy.fft.rfft2(white) * shaping.astype(np.float32), s=(size, size))
        noise = np.moveaxis(noise / (noise.std() + 1e-12), 0, -1)  # [S,S,3], unit std
        lum = noise.mean(axis=-1, keepdims=True)
        squares = int(rng.choice([4, 6, 8]))  # checker squares per tile (periodic)
        coords = (np.arange(size) + 0.5) / size * np.pi * squares
        checker = np.clip(5.0 * np.sin(coords)[:, None] * np.sin(coords)[None, :], -1, 1)[..., None]
        rgb = (base_color[None, None] * (1.0 + 0.45 * lum) + 0.12 * (noise - lum)
               + rng.uniform(0.08, 0.16) * checker)
        levels = [np.clip(rgb, 0, 1).astype(np.float32)]
        while levels[-1].shape[0] > 1:
            x = levels[-1]
            levels.append(0.25 * (x[0::2, 0::2] + x[1::2, 0::2] + x[0::2, 1::2] + x[1::2, 1::2]))
        self.num_levels = len(levels)
        self.flat = np.concatenate([lv.reshape(-1, 3) for lv in levels])  # all mip levels, [sum S_l^2, 3]
        self.level_size = np.array([lv.shape[0] for lv in levels], dtype=np.int64)
        self.level_offset = np.concatenate([[0], np.cumsum(self.level_size ** 2)[:-1]]).astype(np.int64)
        self.texel = tile / size  # scene units per texel at level 0
        self.offsets = rng.uniform(0, tile, (3, 2, 2)).astype(np.float32)  # [axis, side, uv]
        self.face_tints = (np.ones((6, 3), dtype=np.float32) if face_tints is None
                           else face_tints.astype(np.float32))

    def _bilinear(self, level: int, texels: np.ndarray) -> np.ndarray:
        """Periodic bilinear lookup in mip ``level``; ``texels [M,2]`` in level-0 texels -> ``[M,3]``."""
        size = int(self.level_size[level])
        table = self.flat[self.level_offset[level]:self.level_offset[level] + size * size]
        q = texels * np.float32(0.5 ** level) - np.float32(0.5)
        base = np.floor(q)
        w = q - base
        c0 = base.astype(np.int64) & (size - 1)  # sizes are powers of two: modulo = bitwise and
        c1 = (c0 + 1) & (size - 1)
        r0, r1 = c0[:, 1] * size, c1[:, 1] * size
        wx, wy = w[:, 0:1], w[:, 1:2]
        texel = lambda rows: np.take(table, rows, axis=0)  # noqa: E731  (much faster than fancy indexing)
        return ((1 - wy) * ((1 - wx) * texel(r0 + c0[:, 0]) + wx * texel(r0 + c1[:, 0]))
                + wy * ((1 - wx) * texel(r1 + c0[:, 0]) + wx * texel(r1 + c1[:, 0])))

    def _sample(self, uv: np.ndarray, footprint: np.ndarray) -> np.ndarray:
        """Trilinear mip-mapped lookup: ``uv [M,2]`` scene units, ``footprint [M]`` scene units per pixel."""
        lod = np.clip(np.log2(np.maximum(footprint / self.texel, 1e-6)), 0, self.num_levels - 1.001)
        low = lod.astype(np.int64)
        frac = (lod - low).astype(np.float32)[:, None]
        texels = (uv / self.texel).astype(np.float32)
        out = np.empty((len(uv), 3), dtype=np.float32)
        levels = np.unique(low)
        if len(levels) == 1:  # the common case for small objects: no grouping needed
            level = int(levels[0])
            return (1 - frac) * self._bilinear(level, texels) + frac * self._bilinear(level + 1, texels)
        for level in levels:
            idx = np.flatnonzero(low == level)
            t, f = np.take(texels, idx, axis=0), np.take(frac, idx, axis=0)
            out[idx] = (1 - f) * self._bilinear(int(level), t) + f * self._bilinear(int(level) + 1, t)
        return out

    def planar(self, points: np.ndarray, face: np.ndarray, footprint: np.ndarray) -> np.ndarray:
        """Colour ``[M,3]`` of points on axis-aligned faces (object frame); ``face [M]`` = 2 * axis + side."""
        uv = np.take_along_axis(points, np.take(_UV_AXES, face // 2, axis=0), axis=1)
        uv += np.take(self.offsets.reshape(6, 2), face, axis=0)  # offsets[axis, side] with face = 2 * axis + side
        return np.clip(self._sample(uv, footprint) * np.take(self.face_tints, face, axis=0), 0.0, 1.0)

    def triplanar(self, points: np.ndarray, normals: np.ndarray, footprint: np.ndarray) -> np.ndarray:
        """Colour ``[M,3]`` at object-frame ``points [M,3]`` with unit ``normals [M,3]`` (seamless blend)."""
        weights = normals.astype(np.float32) ** 4
        weights /= weights.sum(axis=1, keepdims=True)
        out = np.zeros((len(points), 3), dtype=np.float32)
        for axis in range(3):
            face = 2 * axis + (normals[:, axis] < 0)
            out += weights[:, axis:axis + 1] * self.planar(points, face, footprint)
        return out


_UV_AXES = np.array([[1, 2], [0, 2], [0, 1]])  # in-plane coordinates of a face orthogonal to axis 0 / 1 / 2


@dataclass
class Primitive:
    """One textured rigid primitive. ``kind``: 'room' (inside of a box), 'box' or 'sphere'."""

    kind: str
    size: np.ndarray  # room: [2,3] (lo, hi); box: half extents [3]; sphere: [1] radius
    center: np.ndarray  # [3] at t = 0
    rot0: np.ndarray  # [3,3] at t = 0
    texture: Texture
    dynamic: bool = False
    amp: np.ndarray = field(default_factory=lambda: np.zeros(3))  # centre(t) = center + amp * sin(omega t + phase)
    omega: np.ndarray = field(default_factory=lambda: np.zeros(3))
    phase: np.ndarray = field(default_factory=lambda: np.zeros(3))
    spin_axis: np.ndarray = field(default_factory=lambda: np.array([0.0, 1.0, 0.0]))
    spin_speed: float = 0.0  # rad per frame

    def pose(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """Object-to-world ``(R [3,3], c [3])`` at time ``t``."""
        if not self.dynamic:
            return self.rot0, self.center
        centre = self.center + self.amp * np.sin(self.omega * t + self.phase)
        return rotation(self.spin_axis, self.spin_speed * t) @ self.rot0, centre

    def motion(self, t_from: float, t_to: float) -> np.ndarray:
        """4x4 world transform moving this object's points from time ``t_from`` to ``t_to``."""
        r0, c0 = self.pose(t_from)
        r1, c1 = self.pose(t_to)
        out = np.eye(4)
        out[:3, :3] = r1 @ r0.T
        out[:3, 3] = c1 - out[:3, :3] @ c0
        return out

