"""The ray-cast dynamic scene of :mod:`monst3r.datasets.synthetic` (conventions in the package docstring):
frames ``(RGB [H,W,3], depth [H,W], c2w [4,4], K [3,3], dynamic mask [H,W])``, exact optical flow ``[H,W,2]`` and
ideal network outputs for pairs."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Iterable, Optional, Sequence

import numpy as np

from monst3r.datasets.synthetic.config import SceneConfig
from monst3r.datasets.synthetic.textures import Primitive, Texture, look_at, rotation
from monst3r.errors import Monst3rInputError

_EPS_T = 1e-6
_LIGHT = np.array([-0.3, -1.0, -0.45]) / np.linalg.norm([-0.3, -1.0, -0.45])  # towards the light (y up = -y)


@dataclass
class Frame:
    """Ground truth of one frame (see module docstring for conventions)."""

    rgb: np.ndarray  # uint8 [H,W,3]
    depth: np.ndarray  # float32 [H,W]
    pose: np.ndarray  # float64 [4,4] camera-to-world
    intrinsics: np.ndarray  # float64 [3,3]
    dynamic_mask: np.ndarray  # bool [H,W]
    surface_id: np.ndarray  # int16 [H,W] = 8 * primitive index + face


# --------------------------------------------------------------------------------------------- the scene


class SyntheticScene:
    """A seeded dynamic scene; frames and flows are computed on demand (frames are cached).

    Example::

        scene = SyntheticScene(SceneConfig(width=256, height=144, num_frames=10, seed=3))
        f0 = scene.frame(0)                  # Frame(rgb, depth, pose, intrinsics, dynamic_mask, surface_id)
        flow, valid = scene.flow(0, 2)       # [H,W,2] float32, [H,W] bool
        out = scene.ideal_inference([(0, 1), (1, 0)])   # inference()-style dict of torch tensors
    """

    def __init__(self, config: Optional[SceneConfig] = None, **kwargs: Any):
        if config is None:
            config = SceneConfig(**kwargs)
        elif kwargs:
            config = SceneConfig(**{**asdict(config), **kwargs})
        config.validate()
        self.config = config
        self.width, self.height, self.num_frames = config.width, config.height, config.num_frames
        rng = np.random.default_rng([config.seed, 2024])
        self.focal = 0.5 * config.width / np.tan(np.deg2rad(config.fov_deg) / 2)
        self.K = np.array([[self.focal, 0, config.width / 2], [0, self.focal, config.height / 2], [0, 0, 1.0]])
        self.primitives = self._build_scene(rng, config.num_objects)
        self.poses = self._build_trajectory(rng, config.num_frames, config.static_camera)
        u, v = np.meshgrid(np.arange(config.width, dtype=np.float64), np.arange(config.height, dtype=np.float64))
        self._rays = np.stack([(u - self.K[0, 2]) / self.focal, (v - self.K[1, 2]) / self.focal, np.ones_like(u)],
                              axis=-1)  # [H,W,3] camera-frame rays with z = 1
        self._rays32 = self._rays.reshape(-1, 3).astype(np.float32)
        self._pixels = np.stack([u.reshape(-1), v.reshape(-1)]).astype(np.float32)  # [2,M] (u, v)
        self._frames: dict[int, Frame] = {}
        self._geometry_key: Optional[int] = None
        self._geometry: Any = None

    # ------------------------------------------------------------------ construction

    @staticmethod
    def _palette(rng: np.random.Generator) -> np.ndarray:
        hue = rng.uniform(0, 1)
        k = (np.array([0.0, 2.0, 4.0]) / 6.0 + hue) % 1.0
        sat, val = rng.uniform(0.35, 0.75), rng.uniform(0.45, 0.7)
        return val * (1 - sat * (0.5 + 0.5 * np.cos(2 * np.pi * k)))

    def _build_scene(self, rng: np.random.Generator, num_objects: int) -> list[Primitive]:
        half_w = rng.uniform(3.3, 4.2)
        lo = np.array([-half_w, -2.3, -3.2])
        hi = np.array([half_w, 1.5, rng.uniform(6.5, 8.0)])
        tints = rng.uniform(0.7, 1.15, (6, 3))
        prims = [Primitive("room", np.stack([lo, hi]), np.zeros(3), np.eye(3),
                            Texture(rng, self._palette(rng), tile=4.0, face_tints=tints))]
        for k in range(3):  # static boxes standing on the floor, left / right / back
            half = rng.uniform([0.3, 0.4, 0.3], [0.7, 1.1, 0.7])
            side = (-1, 1, rng.choice([-1, 1]))[k]
            x = side * rng.uniform(1.7, half_w - half[0] - 0.1) if k < 2 else side * rng.uniform(0.0, 1.0)
            z = rng.uniform(3.6, 5.5) if k < 2 else hi[2] - half[2] - rng.uniform(0.1, 0.6)
            centre = np.array([x, hi[1] - half[1], z])
            rot = rotation(np.array([0.0, 1.0, 0.0]), rng.uniform(-0.6, 0.6))
            prims.append(Primitive("box", half, centre, rot, Texture(rng, self._palette(rng), tile=3.0)))
        for k in range(num_objects):
            kind = "sphere" if k % 2 == 0 else "box"
            size = np.array([rng.uniform(0.3, 0.5)]) if kind == "sphere" else rng.uniform(0.2, 0.42, 3)
            centre = np.array([rng.uniform(-1.3, 1.3), rng.uniform(-0.5, 0.4), rng.uniform(2.4, 4.0)])
            axis = rng.normal(size=3)
            prims.append(Primitive(
                kind, size, centre, rotation(axis, rng.uniform(0, np.pi)), Texture(rng, self._palette(rng), tile=2.0),
                dynamic=True,
                amp=rng.uniform([0.3, 0.05, 0.2], [0.8, 0.25, 0.6]) * rng.choice([-1, 1], 3),
                omega=rng.uniform(0.04, 0.09, 3), phase=rng.uniform(0, 2 * np.pi, 3),
                spin_axis=rng.normal(size=3), spin_speed=float(rng.uniform(0.02, 0.06) * rng.choice([-1, 1]))))
        return prims

    @staticmethod
    def _build_trajectory(rng: np.random.Generator, n: int, static: bool) -> np.ndarray:
        t = np.arange(n, dtype=np.float64)[:, None]
        if static:
            amp_p, amp_q, amp_roll = np.full(3, 0.002), np.full(3, 0.004), 0.0015
        else:
            amp_p = rng.uniform([0.4, 0.08, 0.25], [0.8, 0.18, 0.55])
            amp_q = rng.uniform([0.5, 0.1, 0.2], [1.0, 0.3, 0.6])
            amp_roll = rng.uniform(0.02, 0.05)
        om_p, ph_p = rng.uniform(0.03, 0.06, 3), rng.uniform(0, 2 * np.pi, 3)
        om_q, ph_q = rng.uniform(0.03, 0.06, 3), rng.uniform(0, 2 * np.pi, 3)
        om_r, ph_r = rng.uniform(0.02, 0.05), rng.uniform(0, 2 * np.pi)
        positions = np.array([0.0, -0.3, -0.6]) + amp_p * (np.sin(om_p * t + ph_p) - np.sin(ph_p))
        targets = np.array([0.0, -0.1, 3.5]) + amp_q * np.sin(om_q * t + ph_q)
        rolls = amp_roll * np.sin(om_r * t[:, 0] + ph_r)
        poses = np.tile(np.eye(4), (n, 1, 1))
        for k in range(n):
            poses[k, :3, :3] = look_at(positions[k], targets[k], rolls[k])
            poses[k, :3, 3] = positions[k]
        return poses

    # ------------------------------------------------------------------ ray casting

    def _cast(self, time_index: float, origin: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Intersect world rays ``origin + t * dirs`` (``dirs [M,3]``) with the scene at a time.

        Returns ``t [M]`` (ray parameter of the first hit) and surface ids ``[M]`` (``8 * primitive + face``).
        """
        dir_sq = np.einsum("ij,ij->i", dirs, dirs)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            # the room is closed and contains the camera: every ray leaves it through one face
            lo, hi = self.primitives[0].size.astype(dirs.dtype)
            best, sid = None, None
            for axis, d in enumerate(np.ascontiguousarray(dirs.T)):
                positive = d > 0
                t_axis = np.where(positive, hi[axis] - origin[axis], lo[axis] - origin[axis]) / d
                t_axis[d == 0] = np.inf
                face = (2 * axis + positive).astype(np.int16)
                if best is None:
                    best, sid = t_axis, face
                else:
                    closer = t_axis < best
                    best = np.where(closer, t_axis, best)
                    sid = np.where(closer, face, sid)
            for index, prim in enumerate(self.primitives[1:], start=1):
                rot, centre = prim.pose(time_index)
                offset = origin - centre
                radius = prim.size[0] if prim.kind == "sphere" else float(np.linalg.norm(prim.size))
                b = dirs @ offset
                disc = b * b - dir_sq * (offset @ offset - radius ** 2)
                cand = np.flatnonzero(disc > 0)  # rays through the (bounding) sphere
                if cand.size == 0:
                    continue
                if prim.kind == "sphere":
                    t_hit = (-b[cand] - np.sqrt(disc[cand])) / dir_sq[cand]
                    face = np.zeros(cand.size, dtype=np.int64)
                else:
                    o_l = rot.T @ offset
                    d_l = dirs[cand] @ rot
                    t1 = (-prim.size - o_l) / d_l
                    t2 = (prim.size - o_l) / d_l
                    t_min = np.fmin(t1, t2)
                    axis = np.argmax(t_min, axis=1)
                    sub = np.arange(cand.size)
                    t_hit = t_min[sub, axis]
                    t_hit[t_hit > np.min(np.fmax(t1, t2), axis=1)] = np.inf
                    face = 2 * axis + (d_l[sub, axis] < 0)
                hit = (t_hit > _EPS_T) & (t_hit < best[cand])
                best[cand[hit]] = t_hit[hit]
                sid[cand[hit]] = (8 * index + face[hit]).astype(np.int16)
        return best, sid

    @staticmethod
    def _groups(prim_index: np.ndarray) -> list[tuple[int, np.ndarray]]:
        """``[(primitive index, pixel indices)]`` for every primitive present in ``prim_index [M]``."""
        order = np.argsort(prim_index, kind="stable")
        counts = np.bincount(prim_index)
        bounds = np.cumsum(counts)[:-1]
        return [(k, idx) for k, idx in enumerate(np.split(order, bounds)) if idx.size]

    def _surface_normals(self, time_index: float, points: np.ndarray, sid: np.ndarray,
                         groups: Optional[list[tuple[int, np.ndarray]]] = None) -> np.ndarray:
        """World normals ``[M,3]`` (pointing out of the visible side) of surface ``sid [M]`` at ``points [M,3]``."""
        normals = np.zeros_like(points)
        for index, idx in groups if groups is not None else self._groups(sid // 8):
            prim = self.primitives[index]
            rot, centre = prim.pose(time_index)
            if prim.kind == "sphere":
                normals[idx] = (np.take(points, idx, axis=0) - centre) / prim.size[0]
            else:
                # room faces point inwards (lower face -> +axis); box faces point outwards (face 2a -> -axis)
                signs = np.tile([1.0, -1.0], 3) * (1.0 if prim.kind == "room" else -1.0)
                face_normals = (np.repeat(np.eye(3), 2, axis=0) * signs[:, None]) @ rot.T  # [6,3]
                normals[idx] = np.take(face_normals, np.take(sid, idx) % 8, axis=0)
        return normals

    # ------------------------------------------------------------------ frames

    def frame(self, i: int) -> Frame:
        """Render (or fetch from cache) frame ``i``. The arrays are the cached ones: copy before modifying."""
        i = self._check_index(i)
        if i not in self._frames:
            self._frames[i] = self._render(i)
        return self._frames[i]

    def frames(self) -> list[Frame]:
        """All frames, in order."""
        return [self.frame(i) for i in range(self.num_frames)]

    def _check_index(self, i: int) -> int:
        if not 0 <= int(i) < self.num_frames:
            raise IndexError(f"frame index {i} out of range 0..{self.num_frames - 1}")
        return int(i)

    def _render(self, i: int) -> Frame:
        pose = self.poses[i]
        dirs = self._rays32 @ pose[:3, :3].T.astype(np.float32)
        origin = pose[:3, 3].astype(np.float32)
        depth, sid = self._cast(float(i), origin, dirs)
        points = origin + depth[:, None] * dirs
        groups = self._groups(sid // 8)
        normals = self._surface_normals(float(i), points, sid, groups).astype(np.float32)
        # footprint of a pixel on the surface (scene units), larger on slanted surfaces: selects the mip level
        cos = np.abs(np.einsum("ij,ij->i", normals, dirs)) / np.sqrt(np.einsum("ij,ij->i", dirs, dirs))
        footprint = depth / np.float32(self.focal) / np.maximum(cos, 0.25)
        rgb = np.empty((len(depth), 3), dtype=np.float32)
        for index, idx in groups:
            prim = self.primitives[index]
            rot, centre = prim.pose(float(i))
            rot = rot.astype(np.float32)
            local = (np.take(points, idx, axis=0) - centre.astype(np.float32)) @ rot
            fp = np.take(footprint, idx)
            if prim.kind == "sphere":
                rgb[idx] = prim.texture.triplanar(local, np.take(normals, idx, axis=0) @ rot, fp)
            else:
                rgb[idx] = prim.texture.planar(local, np.take(sid, idx) % 8, fp)
        shade = 0.72 + 0.28 * np.clip(normals @ _LIGHT.astype(np.float32), 0, 1)
        rgb *= 255 * shade[:, None]
        h, w = self.height, self.width
        dynamic = np.array([p.dynamic for p in self.primitives])
        return Frame(
            rgb=np.clip(np.rint(rgb), 0, 255).astype(np.uint8).reshape(h, w, 3),
            depth=depth.astype(np.float32).reshape(h, w),
            pose=pose.copy(),
            intrinsics=self.K.copy(),
            dynamic_mask=dynamic[sid // 8].reshape(h, w),
            surface_id=sid.reshape(h, w),
        )

    # ------------------------------------------------------------------ geometry queries

    @property
    def intrinsics(self) -> np.ndarray:
        """``[N,3,3]`` float64 (the same K for every frame)."""
        return np.tile(self.K, (self.num_frames, 1, 1))

    def pointmap(self, i: int) -> np.ndarray:
        """Frame ``i``'s pointmap in its own camera frame: ``float32 [H,W,3]`` (= depth * ray)."""
        return (self.frame(i).depth[..., None] * self._rays).astype(np.float32)

    def world_points(self, i: int) -> np.ndarray:
        """Frame ``i``'s pointmap in world coordinates at time i: ``float64 [H,W,3]``."""
        pose = self.poses[i]
        cam = self.frame(i).depth.astype(np.float64)[..., None] * self._rays
        return cam @ pose[:3, :3].T + pose[:3, 3]

    def relative_pose(self, i: int, j: int) -> np.ndarray:
        """``[4,4]`` transform from camera j coordinates to camera i coordinates (``inv(T_i) @ T_j``)."""
        return np.linalg.inv(self.poses[i]) @ self.poses[j]

    def _source_geometry(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[tuple[int, np.ndarray]]]:
        """Frame i's world points ``float32 [3,M]`` and normals ``float32 [3,M]`` (struct-of-arrays layout for
        speed), surface ids ``[M]`` and the pixel indices of every moving object in it.

        Cached for the last source frame, so flows are best computed grouped by source (see :meth:`flows`).
        """
        if self._geometry_key != i:
            frame = self.frame(i)
            rot, centre = self.poses[i][:3, :3].astype(np.float32), self.poses[i][:3, 3].astype(np.float32)
            points = (frame.depth.reshape(-1, 1) * self._rays32) @ rot.T + centre
            sid = frame.surface_id.reshape(-1)
            groups = self._groups(sid // 8)
            normals = self._surface_normals(float(i), points, sid, groups).astype(np.float32)
            moving = [(k, idx) for k, idx in groups if self.primitives[k].dynamic]
            self._geometry = (np.ascontiguousarray(points.T), np.ascontiguousarray(normals.T), sid, moving)
            self._geometry_key = i
        return self._geometry

    def flow(self, i: int, j: int) -> tuple[np.ndarray, np.ndarray]:
        """Optical flow from frame i to frame j (camera and object motion) and its validity mask.

        Returns:
            flow ``float32 [H,W,2]``: pixel ``(u, v)`` of frame i moves to ``(u, v) + flow`` in frame j (0 where
            the point is behind camera j);
            valid ``bool [H,W]``: the surface point is visible in frame j (in front of the camera, inside the
            image, front-facing, and the surface seen at the nearest pixel of frame j, i.e. not occluded).
        """
        i, j = self._check_index(i), self._check_index(j)
        points, normals, sid, moving = self._source_geometry(i)
        if moving and i != j:
            points, normals = points.copy(), normals.copy()
            for index, idx in moving:
                motion = self.primitives[index].motion(float(i), float(j)).astype(np.float32)
                points[:, idx] = motion[:3, :3] @ points[:, idx] + motion[:3, 3:]
                normals[:, idx] = motion[:3, :3] @ normals[:, idx]
        return self._flow_from_points(j, points, sid, normals)

    def rigid_flow(self, i: int, j: int) -> tuple[np.ndarray, np.ndarray]:
        """The flow camera motion alone would cause (every point treated as static), with its validity."""
        i, j = self._check_index(i), self._check_index(j)
        points, normals, sid, _ = self._source_geometry(i)
        return self._flow_from_points(j, points, sid, normals)

    def _flow_from_points(self, j: int, points: np.ndarray, sid: np.ndarray, normals: np.ndarray
                          ) -> tuple[np.ndarray, np.ndarray]:
        """Flow of world ``points [3,M]`` (at time j) seen from camera j, and visibility (see :meth:`flow`)."""
        h, w = self.height, self.width
        rot, centre = self.poses[j][:3, :3].astype(np.float32), self.poses[j][:3, 3:].astype(np.float32)
        rel = points - centre
        cam = rot.T @ rel
        front = cam[2] > _EPS_T
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            inv = np.where(front, np.float32(self.focal) / cam[2], np.float32(0))
        u = cam[0] * inv + np.float32(self.K[0, 2])
        v = cam[1] * inv + np.float32(self.K[1, 2])
        flow = np.stack([u - self._pixels[0], v - self._pixels[1]], axis=-1)
        flow[~front] = 0.0
        valid = front & (u >= -0.5) & (u < w - 0.5) & (v >= -0.5) & (v < h - 0.5)
        valid &= (normals[0] * rel[0] + normals[1] * rel[1] + normals[2] * rel[2]) < 0  # front-facing
        col = np.clip(np.rint(u), 0, w - 1).astype(np.int64)
        row = np.clip(np.rint(v), 0, h - 1).astype(np.int64)
        valid &= np.take(self.frame(j).surface_id.reshape(-1), row * w + col) == sid
        return flow.reshape(h, w, 2), valid.reshape(h, w)

    def flows(self, pairs: Iterable[tuple[int, int]]) -> dict[tuple[int, int], tuple[np.ndarray, np.ndarray]]:
        """``{(i, j): (flow, valid)}`` for the given ordered pairs (computed grouped by source frame)."""
        pairs = list(pairs)
        out = {pair: self.flow(*pair) for pair in sorted(set(pairs))}
        return {pair: out[pair] for pair in pairs}

    # ------------------------------------------------------------------ ideal network output

    def ideal_pair(self, i: int, j: int, noise_std: float = 0.0, conf: float = 5.0, scale: Optional[float] = 1.0,
                   noise_seed: int = 0) -> dict[str, np.ndarray]:
        """What a perfect MonST3R outputs for the pair (view1 = frame i, view2 = frame j).

        Args:
            noise_std: std of multiplicative per-pixel depth noise along the rays (0 = exact).
            conf: confidence of an exact pixel (>= 1, like the head's ``1 + exp(x)``); with noise a pixel with
                noise ``e * noise_std`` gets ``1 + (conf - 1) * exp(-e^2 / 2)``.
            scale: global scale of both pointmaps (a network's output is up to scale); None = a random
                per-pair scale, log-uniform in [0.5, 2].
            noise_seed: extra seed for the noise / random scale (combined with the scene seed and i, j).
        Returns:
            ``pts3d [H,W,3]`` (frame i in camera i), ``pts3d_in_other_view [H,W,3]`` (frame j at time j, in camera
            i), ``conf1 [H,W]``, ``conf2 [H,W]`` (float32), and the ``scale`` used.
        """
        rng = np.random.default_rng([self.config.seed, i, j, noise_seed, 11])
        if scale is None:
            scale = float(np.exp(rng.uniform(np.log(0.5), np.log(2.0))))
        pts_i = self.pointmap(i).astype(np.float64)
        rel = self.relative_pose(i, j)
        pts_j = self.pointmap(j).astype(np.float64) @ rel[:3, :3].T + rel[:3, 3]
        out: dict[str, Any] = {"scale": scale}
        for key, conf_key, pts, origin in (("pts3d", "conf1", pts_i, np.zeros(3)),
                                           ("pts3d_in_other_view", "conf2", pts_j, rel[:3, 3])):
            c = np.full(pts.shape[:2], conf, dtype=np.float32)
            if noise_std > 0:
                e = rng.standard_normal(pts.shape[:2])
                pts = origin + (pts - origin) * (1 + noise_std * e)[..., None]
                c = (1 + (conf - 1) * np.exp(-0.5 * e ** 2)).astype(np.float32)
            out[key] = (pts * scale).astype(np.float32)
            out[conf_key] = c
        return out

    def view(self, i: int, gt_dynamic_mask: bool = True) -> dict[str, Any]:
        """A ``load_images``-style view dict of frame i (torch tensors with a leading batch dim of 1)."""
        import torch

        f = self.frame(i)
        img = torch.from_numpy(f.rgb).permute(2, 0, 1)[None].float() / 255.0
        return {
            "img": img * 2 - 1,
            "true_shape": np.array([[self.height, self.width]], dtype=np.int32),
            "idx": i,
            "instance": str(i),
            "mask": (img.sum(dim=1) > 0.01),
            "dynamic_mask": torch.from_numpy(f.dynamic_mask.copy() if gt_dynamic_mask
                                             else np.zeros_like(f.dynamic_mask))[None],
        }

    def ideal_inference(self, pairs: Sequence[tuple[int, int]], noise_std: float = 0.0, conf: float = 5.0,
                        scale: Optional[float] = 1.0, gt_dynamic_mask: bool = True, with_poses: bool = False,
                        noise_seed: int = 0) -> dict[str, Any]:
        """``inference()``-style output of the ideal network for ``pairs`` (E ordered ``(i, j)``).

        Returns ``{'view1': {...}, 'view2': {...}, 'pred1': {'pts3d', 'conf'}, 'pred2': {'conf',
        'pts3d_in_other_view'}, 'loss': None}``: ``img [E,3,H,W]`` float32 in [-1,1], ``idx`` list of int,
        ``instance`` list of str, ``true_shape [E,2]`` int32, ``mask``/``dynamic_mask [E,H,W]`` bool (GT dynamic
        masks, or zeros with ``gt_dynamic_mask=False`` as ``load_images`` gives without a mask folder),
        optional ``camera_pose [E,4,4]`` (``with_poses``); ``pts3d``/``pts3d_in_other_view [E,H,W,3]`` and
        ``conf [E,H,W]`` float32. See :meth:`ideal_pair` for noise / conf / scale.
        """
        import torch

        if not pairs:
            raise Monst3rInputError("ideal_inference needs at least one pair")
        views = {k: self.view(k, gt_dynamic_mask) for k in sorted({x for p in pairs for x in p})}

        def side(indices: list[int]) -> dict[str, Any]:
            out = {
                "img": torch.cat([views[k]["img"] for k in indices]),
                "idx": list(indices),
                "instance": [views[k]["instance"] for k in indices],
                "true_shape": torch.from_numpy(np.concatenate([views[k]["true_shape"] for k in indices])),
                "mask": torch.cat([views[k]["mask"] for k in indices]),
                "dynamic_mask": torch.cat([views[k]["dynamic_mask"] for k in indices]),
            }
            if with_poses:
                out["camera_pose"] = torch.from_numpy(self.poses[indices].astype(np.float32))
            return out

        preds = [self.ideal_pair(i, j, noise_std=noise_std, conf=conf, scale=scale, noise_seed=noise_seed)
                 for i, j in pairs]
        stack = lambda key: torch.from_numpy(np.stack([p[key] for p in preds]))  # noqa: E731
        return {
            "view1": side([i for i, _ in pairs]),
            "view2": side([j for _, j in pairs]),
            "pred1": {"pts3d": stack("pts3d"), "conf": stack("conf1")},
            "pred2": {"conf": stack("conf2"), "pts3d_in_other_view": stack("pts3d_in_other_view")},
            "loss": None,
        }
