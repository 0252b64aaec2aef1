"""Spring (spec training.md 7.7): ``<root>/<dset>/<seq>/`` with ``frame_left/frame_left_%04d.png``
(1-indexed), ``disp1_left/disp1_left_%04d.dsp5`` (HDF5 dataset ``disparity`` at twice the image resolution),
``cam_data/extrinsics.txt`` (one row of 16 per frame: world-to-camera 4x4, row-major) and
``cam_data/intrinsics.txt`` (rows ``fx fy cx cy``).

Depth = ``fx * 0.065 / disparity`` subsampled ``[::2, ::2]``; non-finite values become -1 (invalid).
``camera_pose = inverse(extrinsics)``; the intrinsics matrix gets ``K[2,2] = 1`` (the original leaves 0).
Reading ``.dsp5`` needs ``h5py``. Preparation: ``bash data/prepare_spring.sh``.
"""
from __future__ import annotations

import glob
import os
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import PIL.Image

from monst3r.datasets.base.video_clips import Sequence_, VideoClipDataset, sequence_folders
from monst3r.errors import Monst3rInputError
from monst3r.datasets.camera_geometry import rigid_inverse_np

BASELINE = 0.065


def read_dsp5(path: str) -> np.ndarray:
    """Spring disparity file -> float32 ``[2H, 2W]``."""
    try:
        import h5py
    except ImportError:
        raise Monst3rInputError("reading Spring disparities (.dsp5) needs h5py: pip install h5py") from None
    with h5py.File(path, "r") as f:
        return np.asarray(f["disparity"], dtype=np.float32)


class SpringDUSt3R(VideoClipDataset):
    """Spring pairs; defaults ``dataset_location='data/spring'``, ``dset='train'``, ``strides=[8]``;
    ``remove_seq_list`` skips sequences by name."""

    dataset_label = "Spring"
    prepare_script = "data/prepare_spring.sh"
    default_location = "data/spring"
    default_dset = "train"
    default_strides = (8,)

    def __init__(self, *args: Any, remove_seq_list: Optional[Sequence[str]] = None, **kwargs: Any):
        self.remove_seq_list = list(remove_seq_list or [])
        super().__init__(*args, **kwargs)

    def _load_sequences(self) -> List[Sequence_]:
        seqs = []
        for path in sequence_folders(self.dataset_location, self.dset, "*"):
            name = os.path.basename(path)
            if name in self.remove_seq_list:
                continue
            rgbs = sorted(glob.glob(os.path.join(path, "frame_left", "frame_left_*.png")))
            if not rgbs:
                continue
            seqs.append(Sequence_(name, len(rgbs), dict(path=path, rgbs=rgbs)))
        return seqs

    def _clip_starts(self, n: int, stride: int) -> range:
        return range(1, n - self.S * stride + 2, self.clip_step)

    def _frame_id(self, seq: Sequence_, frame: int) -> str:
        return os.path.join(seq.data["path"], "frame_left", f"frame_left_{frame:04d}.png")

    def _cams(self, seq: Sequence_):
        if "E" not in seq.data:
            cam = os.path.join(seq.data["path"], "cam_data")
            seq.data["E"] = np.loadtxt(os.path.join(cam, "extrinsics.txt"), ndmin=2).reshape(-1, 4, 4)
            seq.data["I"] = np.loadtxt(os.path.join(cam, "intrinsics.txt"), ndmin=2)
        return seq.data["E"], seq.data["I"]

    def _load_frame(self, seq: Sequence_, frame: int) -> Dict[str, Any]:
        name = f"frame_left_{frame:04d}.png"
        rgb = np.asarray(PIL.Image.open(os.path.join(seq.data["path"], "frame_left", name)).convert("RGB"))
        E, I = self._cams(seq)
        fx, fy, cx, cy = (float(v) for v in I[frame - 1])
        K = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1.0]])
        disp = read_dsp5(os.path.join(seq.data["path"], "disp1_left", f"disp1_left_{frame:04d}.dsp5"))
        with np.errstate(divide="ignore", invalid="ignore"):
            depth = (fx * BASELINE / disp)[::2, ::2].astype(np.float32)
        depth[~np.isfinite(depth)] = -1
        return dict(rgb=rgb, depth=depth, K=K, c2w=rigid_inverse_np(E[frame - 1]), instance=name)
