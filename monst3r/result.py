"""``Reconstruction``: the typed result every writer and consumer reads (design.md).

Built by ``scene.result()`` (any global-alignment mode), by the feed-forward real-time path
(:func:`monst3r.cloud_opt.feed_forward.feed_forward_reconstruction`) and by :func:`monst3r.io.load_result`.
Arrays are numpy, on the CPU, detached from any optimizer.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from monst3r.errors import Monst3rInputError

FrameMaps = np.ndarray | list  # [N, H, W(, C)] when all frames share a size, else a list of per-frame arrays


@dataclass
class Reconstruction:
    """Per-frame geometry of a video.

    Attributes (N frames; H, W per frame):
        poses: ``[N, 4, 4]`` float32 camera-to-world, OpenCV axes.
        intrinsics: ``[N, 3, 3]`` float32 pinhole K (pixel centres at integer coordinates).
        depths: ``[N, H, W]`` float32 z-depth (same units as the poses' translations).
        confs: ``[N, H, W]`` float32 raw confidences (>= 1 from the network; 0 where ``clean_pointcloud`` removed a
            point). The result folder stores log(confs) in ``conf_<i>.npy`` (-inf where 0).
        init_confs: ``[N, H, W]`` float32 raw per-image confidences before any clean-up (``init_conf_<i>.npy`` = log).
        dynamic_masks: ``[N, H, W]`` bool, True on moving pixels (the masks the flow loss used).
        rgb: ``[N, H, W, 3]`` float32 in [0, 1].
        meta: free-form metadata, e.g. ``source`` ('optimizer', 'pairviewer', 'feed_forward', 'loaded'),
            ``sam2`` ('refined', 'skipped: <reason>', 'off'), ``image_paths``, ``final_loss``, ``mask_source``.
        sam2_masks: optional ``[N, H, W]`` bool masks predicted by SAM2 alone (the original writes these to
            ``dynamic_mask_<i>.png`` instead of the union the loss used; see ``save_result(faithful_masks=True)``).
    When frames have different sizes, the per-frame fields are lists of arrays instead of stacked arrays.
    """

    poses: np.ndarray
    intrinsics: np.ndarray
    depths: FrameMaps
    confs: FrameMaps
    init_confs: FrameMaps
    dynamic_masks: FrameMaps
    rgb: FrameMaps
    meta: dict[str, Any] = field(default_factory=dict)
    sam2_masks: FrameMaps | None = None

    def __post_init__(self) -> None:
        self.poses = np.asarray(self.poses, dtype=np.float32)
        self.intrinsics = np.asarray(self.intrinsics, dtype=np.float32)
        n = len(self.poses)
        if self.poses.shape != (n, 4, 4):
            raise Monst3rInputError(f"Reconstruction.poses must be [N, 4, 4], got {self.poses.shape}")
        if self.intrinsics.shape != (n, 3, 3):
            raise Monst3rInputError(f"Reconstruction.intrinsics must be [{n}, 3, 3], got {self.intrinsics.shape}")
        for name in ("depths", "confs", "init_confs", "dynamic_masks", "rgb"):
            value = getattr(self, name)
            if len(value) != n:
                raise Monst3rInputError(f"Reconstruction.{name} has {len(value)} frames, poses have {n}")
            dtype = bool if name == "dynamic_masks" else np.float32
            setattr(self, name, _stack_or_list(value, dtype))
            for k in range(n):
                want = self.frame_shape(k) if name != "depths" else None
                got = getattr(self, name)[k].shape[:2]
                if want is not None and got != want:
                    raise Monst3rInputError(f"Reconstruction.{name}[{k}] has shape {got}, depth has {want}")
        if self.sam2_masks is not None:
            self.sam2_masks = _stack_or_list(self.sam2_masks, bool)

    # ------------------------------------------------------------------------------------------------------
    @property
    def n_frames(self) -> int:
        return len(self.poses)

    def __len__(self) -> int:
        return self.n_frames

    def frame_shape(self, k: int) -> tuple[int, int]:
        return tuple(self.depths[k].shape[:2])

    @property
    def focals(self) -> np.ndarray:
        """``[N]`` mean of fx and fy."""
        return (self.intrinsics[:, 0, 0] + self.intrinsics[:, 1, 1]) / 2

    @property
    def principal_points(self) -> np.ndarray:
        """``[N, 2]`` (cx, cy)."""
        return self.intrinsics[:, :2, 2].copy()

    def pts3d(self, k: int | None = None) -> np.ndarray | list[np.ndarray]:
        """World points ``[H, W, 3]`` of frame k (all frames when k is None) from depth, K and pose."""
        from monst3r.utils.geometry import depthmap_to_world
        if k is None:
            pts = [self.pts3d(i) for i in range(self.n_frames)]
            return _stack_or_list(pts, np.float32)
        return depthmap_to_world(np.asarray(self.depths[k]), self.intrinsics[k], self.poses[k])

    def masks(self, min_conf_thr: float = 1.1, use_init_conf: bool = True) -> np.ndarray | list[np.ndarray]:
        """Points kept for export: raw (initial) confidence > ``min_conf_thr``."""
        src = self.init_confs if use_init_conf else self.confs
        return _stack_or_list([np.asarray(c) > min_conf_thr for c in src], bool)

    def subset(self, frames) -> "Reconstruction":
        """A new Reconstruction with only ``frames`` (a slice or a sequence of indices)."""
        idx = list(range(self.n_frames))[frames] if isinstance(frames, slice) else list(frames)

        def pick(v):
            if v is None:
                return None
            return v[idx] if isinstance(v, np.ndarray) else [v[i] for i in idx]
        meta = dict(self.meta)
        paths = meta.get("image_paths")
        if isinstance(paths, list) and len(paths) == self.n_frames:  # per-frame metadata follows the frames
            meta["image_paths"] = [paths[i] for i in idx]
        return replace(self, poses=self.poses[idx], intrinsics=self.intrinsics[idx], depths=pick(self.depths),
                       confs=pick(self.confs), init_confs=pick(self.init_confs),
                       dynamic_masks=pick(self.dynamic_masks), rgb=pick(self.rgb), meta=meta,
                       sam2_masks=pick(self.sam2_masks))

    def copy(self) -> "Reconstruction":
        """A deep copy whose arrays own their memory (no views of optimizer tensors)."""
        def own(v):
            if v is None:
                return None
            return np.array(v, copy=True) if isinstance(v, np.ndarray) else [np.array(a, copy=True) for a in v]
        return replace(self, poses=own(self.poses), intrinsics=own(self.intrinsics), depths=own(self.depths),
                       confs=own(self.confs), init_confs=own(self.init_confs),
                       dynamic_masks=own(self.dynamic_masks), rgb=own(self.rgb), meta=dict(self.meta),
                       sam2_masks=own(self.sam2_masks))

    @classmethod
    def concatenate(cls, parts: "list[Reconstruction]", meta: dict | None = None) -> "Reconstruction":
        """Frames of ``parts`` one after the other (e.g. the chunks of a streaming run); ``meta`` defaults to the
        last part's. ``sam2_masks`` is kept only when every part has it."""
        if not parts:
            raise Monst3rInputError("Reconstruction.concatenate needs at least one part")

        def cat(name):
            vals = [getattr(p, name) for p in parts]
            if any(v is None for v in vals):
                return None
            frames = [f for v in vals for f in v]
            return frames
        meta = dict(parts[-1].meta) if meta is None else dict(meta)
        paths = [p.meta.get("image_paths") for p in parts]
        if all(isinstance(x, list) and len(x) == p.n_frames for x, p in zip(paths, parts)):
            meta["image_paths"] = [x for ps in paths for x in ps]
        return cls(poses=np.concatenate([p.poses for p in parts]),
                   intrinsics=np.concatenate([p.intrinsics for p in parts]),
                   depths=cat("depths"), confs=cat("confs"), init_confs=cat("init_confs"),
                   dynamic_masks=cat("dynamic_masks"), rgb=cat("rgb"),
                   meta=meta, sam2_masks=cat("sam2_masks"))


def _stack_or_list(frames, dtype):
    """Stack per-frame arrays when they share a shape, else keep a list (each converted to ``dtype``)."""
    if isinstance(frames, np.ndarray):
        return frames.astype(dtype, copy=False)
    arrs = [np.asarray(_np(f)).astype(dtype, copy=False) for f in frames]
    if len({a.shape for a in arrs}) <= 1 and arrs:
        return np.stack(arrs)
    return arrs


def _np(x):
    try:
        import torch
        if isinstance(x, torch.Tensor):
            return x.detach().cpu().numpy()
    except ImportError:  # pragma: no cover
        pass
    return x
