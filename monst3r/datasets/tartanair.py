"""TartanAir (spec training.md 7.7): ``<root>/<env>/<dset>/<P###>/`` with ``image_left/%06d_left.png``,
``depth_left/%06d_left_depth.npy`` (float32 metres) and ``pose_left.txt`` (rows ``tx ty tz qx qy qz qw``, NED
body frame). Fixed intrinsics fx = fy = 320, cx = 320, cy = 240 (640x480). Labels ``<env>-<P###>``.

Pose conversion to camera-to-world in OpenCV axes: position ``(x, y, z) = (ty, tz, tx)`` and quaternion
``(qx, qy, qz, qw) = (qy, qz, qx, qw)`` of the file row.
Preparation: ``bash data/prepare_tartanair.sh``.
"""
from __future__ import annotations

import glob
import os
from typing import Any, Dict, List

import numpy as np
import PIL.Image

from monst3r.datasets.base.video_clips import Sequence_, VideoClipDataset, sequence_folders
from monst3r.datasets.camera_geometry import quat_xyzw_to_rotmat

TARTANAIR_K = np.array([[320.0, 0, 320.0], [0, 320.0, 240.0], [0, 0, 1]])


def tartanair_pose_to_c2w(row: np.ndarray) -> np.ndarray:
    """``tx ty tz qx qy qz qw`` (NED) -> camera-to-world ``[4,4]`` in OpenCV axes."""
    tx, ty, tz, qx, qy, qz, qw = (float(v) for v in row)
    c2w = np.eye(4)
    c2w[:3, :3] = quat_xyzw_to_rotmat([qy, qz, qx, qw])
    c2w[:3, 3] = (ty, tz, tx)
    return c2w


class TarTanAirDUSt3R(VideoClipDataset):
    """TartanAir pairs; defaults ``dataset_location='data/tartanair'``, ``dset='Hard'``, ``strides=[8]``."""

    dataset_label = "tartanair"
    prepare_script = "data/prepare_tartanair.sh"
    default_location = "data/tartanair"
    default_dset = "Hard"
    default_strides = (8,)

    def _load_sequences(self) -> List[Sequence_]:
        seqs = []
        for path in sequence_folders(self.dataset_location, "*", self.dset, "*"):
            rgbs = sorted(glob.glob(os.path.join(path, "image_left", "*_left.png")))
            pose_file = os.path.join(path, "pose_left.txt")
            if not rgbs or not os.path.isfile(pose_file):
                continue
            env = os.path.basename(os.path.dirname(os.path.dirname(path)))
            name = f"{env}-{os.path.basename(path)}"
            seqs.append(Sequence_(name, len(rgbs), dict(path=path, rgbs=rgbs, pose_file=pose_file)))
        return seqs

    def _clip_starts(self, n: int, stride: int) -> range:
        return range(0, n - self.S * stride + 1, self.clip_step)

    def _frame_id(self, seq: Sequence_, frame: int) -> str:
        return seq.data["rgbs"][frame]

    def _poses(self, seq: Sequence_) -> np.ndarray:
        if "poses" not in seq.data:
            seq.data["poses"] = np.loadtxt(seq.data["pose_file"], ndmin=2)
        return seq.data["poses"]

    def _load_frame(self, seq: Sequence_, frame: int) -> Dict[str, Any]:
        rgb_path = seq.data["rgbs"][frame]
        name = os.path.basename(rgb_path)
        depth_path = os.path.join(seq.data["path"], "depth_left", name.replace("_left.png", "_left_depth.npy"))
        rgb = np.asarray(PIL.Image.open(rgb_path).convert("RGB"))
        depth = np.load(depth_path).astype(np.float32)
        return dict(rgb=rgb, depth=depth, K=TARTANAIR_K.copy(), c2w=tartanair_pose_to_c2w(self._poses(seq)[frame]),
                    instance=name)
