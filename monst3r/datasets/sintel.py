"""MPI Sintel (spec training.md 7.7), default root ``data/sintel/training``:
``<root>/<dset>/<seq>/frame_%04d.png`` (1-indexed; dset ``clean`` or ``final``), ``<root>/depth/<seq>/
frame_%04d.dpt``, ``<root>/camdata_left/<seq>/frame_%04d.cam`` and, optionally,
``<root>/dynamic_label_perfect/<seq>/frame_%04d.png``.

``.dpt``: float32 tag 202021.25, int32 width, int32 height, float32 depth. ``.cam``: float32 tag, 9 float64
(K, row-major), 12 float64 (3x4 world-to-camera). ``camera_pose = inverse``.
Views carry ``dynamic_mask`` (bool ``[H,W]``; all True when the label file is missing, as the original) when
``load_dynamic_mask``; unlike the original, the mask goes through exactly the same crop/resize as the image
(one geometry for both) and is transposed with it for portrait views.
Preparation: ``bash data/prepare_sintel.sh``.
"""
from __future__ import annotations

import glob
import os
from typing import Any, Dict, List, Tuple

import numpy as np
import PIL.Image

from monst3r.datasets.base.video_clips import Sequence_, VideoClipDataset, sequence_folders
from monst3r.datasets.camera_geometry import rigid_inverse_np

TAG_FLOAT = 202021.25


def read_dpt(path: str) -> np.ndarray:
    """Sintel depth file -> float32 ``[H, W]``."""
    with open(path, "rb") as f:
        tag = np.fromfile(f, np.float32, 1)
        if len(tag) != 1 or abs(float(tag[0]) - TAG_FLOAT) > 1e-3:
            raise ValueError(f"{path} is not a Sintel .dpt file")
        w, h = (int(v) for v in np.fromfile(f, np.int32, 2))
        return np.fromfile(f, np.float32, w * h).reshape(h, w)


def read_cam(path: str) -> Tuple[np.ndarray, np.ndarray]:
    """Sintel camera file -> ``(K [3,3], world-to-camera [3,4])`` float64."""
    with open(path, "rb") as f:
        tag = np.fromfile(f, np.float32, 1)
        if len(tag) != 1 or abs(float(tag[0]) - TAG_FLOAT) > 1e-3:
            raise ValueError(f"{path} is not a Sintel .cam file")
        K = np.fromfile(f, np.float64, 9).reshape(3, 3)
        E = np.fromfile(f, np.float64, 12).reshape(3, 4)
    return K, E


def write_dpt(path: str, depth: np.ndarray) -> None:
    """Write a Sintel ``.dpt`` file (used by tests and conversion scripts)."""
    h, w = depth.shape
    with open(path, "wb") as f:
        np.float32(TAG_FLOAT).tofile(f)
        np.array([w, h], np.int32).tofile(f)
        depth.astype(np.float32).tofile(f)


def write_cam(path: str, K: np.ndarray, w2c: np.ndarray) -> None:
    """Write a Sintel ``.cam`` file."""
    with open(path, "wb") as f:
        np.float32(TAG_FLOAT).tofile(f)
        np.asarray(K, np.float64).reshape(9).tofile(f)
        np.asarray(w2c, np.float64)[:3, :4].reshape(12).tofile(f)


class SintelDUSt3R(VideoClipDataset):
    """Sintel pairs; defaults ``dataset_location='data/sintel/training'``, ``dset='clean'``, ``strides=[7]``."""

    dataset_label = "sintel"
    prepare_script = "data/prepare_sintel.sh"
    default_location = "data/sintel/training"
    default_dset = "clean"
    default_strides = (7,)

    def __init__(self, *args: Any, load_dynamic_mask: bool = True, **kwargs: Any):
        self.load_dynamic_mask = load_dynamic_mask
        super().__init__(*args, **kwargs)

    def _load_sequences(self) -> List[Sequence_]:
        seqs = []
        for path in sequence_folders(self.dataset_location, self.dset, "*"):
            frames = sorted(glob.glob(os.path.join(path, "frame_*.png")))
            if frames:
                seqs.append(Sequence_(os.path.basename(path), len(frames), dict(name=os.path.basename(path))))
        return seqs

    def _clip_starts(self, n: int, stride: int) -> range:
        return range(1, n - self.S * max(stride, self.clip_step_last_skip) + 1, self.clip_step)

    def _path(self, kind: str, seq: Sequence_, frame: int, ext: str) -> str:
        return os.path.join(self.dataset_location, kind, seq.name, f"frame_{frame:04d}.{ext}")

    def _frame_id(self, seq: Sequence_, frame: int) -> str:
        return self._path(self.dset, seq, frame, "png")

    def _load_frame(self, seq: Sequence_, frame: int) -> Dict[str, Any]:
        rgb = np.asarray(PIL.Image.open(self._path(self.dset, seq, frame, "png")).convert("RGB"))
        depth = read_dpt(self._path("depth", seq, frame, "dpt"))
        K, E = read_cam(self._path("camdata_left", seq, frame, "cam"))
        w2c = np.eye(4)
        w2c[:3, :4] = E
        out = dict(rgb=rgb, depth=depth, K=K, c2w=rigid_inverse_np(w2c), instance=f"frame_{frame:04d}.png")
        if self.load_dynamic_mask:
            mpath = self._path("dynamic_label_perfect", seq, frame, "png")
            if os.path.isfile(mpath):
                mask = np.asarray(PIL.Image.open(mpath).convert("L"), dtype=np.float32) / 255.0
            else:
                mask = np.ones(depth.shape, dtype=np.float32)
            out["extras"] = {"dynamic_mask": mask}
        return out
