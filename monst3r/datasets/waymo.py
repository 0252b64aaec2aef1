"""Waymo Open (DUSt3R's preprocessed layout; spec training.md 7.7).

``<ROOT>/<pairs_npz_name>`` (default ``waymo_pairs_video.npz``) holds ``scenes`` (folder names), ``frames``
(frame base names such as ``00042_1`` = frame 42 of camera 1) and ``pairs`` (rows ``scene_id, frame_id_1,
frame_id_2``). Per frame in ``<ROOT>/<scene>/``: ``<frame>.jpg``, ``<frame>.exr`` (float32 depth, sparse LiDAR,
0 = invalid) and ``<frame>.npz`` (``intrinsics`` 3x3, ``cam2world`` 4x4 OpenCV axes, ``distortion``).
EXR files are read with OpenCV (``OPENCV_IO_ENABLE_OPENEXR=1``) or, when the OpenCV build has no EXR codec, with
the ``openexr`` package. Preparation: ``bash data/prepare_waymo.sh`` (download + ``data/prepare_waymo.py``).
"""
from __future__ import annotations

import os
from typing import Any, Dict, List, Tuple

import numpy as np
import PIL.Image

from monst3r.datasets.base.base_stereo_view_dataset import BaseStereoViewDataset, missing_dataset_error
from monst3r.errors import Monst3rInputError


def read_exr_depth(path: str) -> np.ndarray:
    """Single-channel float EXR -> float32 ``[H, W]``."""
    os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")
    try:
        import cv2

        img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    except Exception:  # noqa: BLE001 - builds without the EXR codec raise cv2.error
        img = None
    if img is None:
        try:
            import OpenEXR
        except ImportError:
            raise Monst3rInputError(f"cannot read {path}: this OpenCV has no EXR support; pip install openexr") \
                from None
        with OpenEXR.File(path) as f:
            channels = f.channels()
            key = next(k for k in ("Y", "R", "Z", "depth") if k in channels) if any(
                k in channels for k in ("Y", "R", "Z", "depth")) else next(iter(channels))
            img = np.asarray(channels[key].pixels)
    img = np.asarray(img, dtype=np.float32)
    return img[..., 0] if img.ndim == 3 else img


def write_exr_depth(path: str, depth: np.ndarray) -> None:
    """Write a single-channel float32 EXR (OpenCV when it can, else ``openexr``; channel ``Y``)."""
    os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")
    try:
        import cv2

        if cv2.imwrite(path, depth.astype(np.float32)):
            return
    except Exception:  # noqa: BLE001
        pass
    import OpenEXR

    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    with OpenEXR.File(header, {"Y": depth.astype(np.float32)}) as f:
        f.write(path)


class Waymo(BaseStereoViewDataset):
    """Waymo pairs from DUSt3R's preprocessed folder: ``Waymo(ROOT='data/waymo_processed', pairs_npz_name=...,
    resolution=..., ...)`` (no ``z_far``: LiDAR depth is kept whole)."""

    dataset_label = "Waymo"
    prepare_script = "data/prepare_waymo.sh"

    def __init__(self, *args: Any, ROOT: str, pairs_npz_name: str = "waymo_pairs_video.npz", **kwargs: Any):
        if args:
            raise TypeError("Waymo takes keyword arguments only")
        super().__init__(**kwargs)
        self.ROOT = str(ROOT)
        self.pairs_npz_name = pairs_npz_name
        if not os.path.isdir(self.ROOT):
            raise missing_dataset_error("Waymo", self.ROOT, self.prepare_script)
        npz = os.path.join(self.ROOT, pairs_npz_name)
        if not os.path.isfile(npz):
            raise Monst3rInputError(f"Waymo: pair list {npz!r} not found; build it with data/prepare_waymo.py "
                                    "(see data/prepare_training.md)")
        with np.load(npz, allow_pickle=False) as data:
            self.scenes = [str(s) for s in data["scenes"]]
            self.frames = [str(f) for f in data["frames"]]
            self.pairs = np.asarray(data["pairs"], dtype=np.int64).reshape(-1, 3)

    def __len__(self) -> int:
        return len(self.pairs)

    def pair_names(self, idx: int) -> Tuple[str, str, str]:
        scene, a, b = (int(v) for v in self.pairs[idx])
        return self.scenes[scene], self.frames[a], self.frames[b]

    def _get_views(self, idx: int, resolution: Tuple[int, int], rng: np.random.Generator) -> List[Dict[str, Any]]:
        scene, *frames = self.pair_names(idx)
        views = []
        for frame in frames:
            base = os.path.join(self.ROOT, scene, frame)
            rgb = np.asarray(PIL.Image.open(base + ".jpg").convert("RGB"))
            depth = read_exr_depth(base + ".exr")
            with np.load(base + ".npz", allow_pickle=False) as cam:
                K = np.asarray(cam["intrinsics"], dtype=np.float64)
                c2w = np.asarray(cam["cam2world"], dtype=np.float64)
            img, depth, K, _ = self._crop_resize_if_necessary(rgb, depth, K, resolution, rng, info=f"{scene}/{frame}")
            views.append(dict(img=img, depthmap=depth, camera_pose=c2w.astype(np.float32), camera_intrinsics=K,
                              dataset=self.dataset_label, label=scene, instance=frame))
        return views
