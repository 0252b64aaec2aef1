"""PointOdyssey (spec training.md 7.7): ``<root>/<dset>/<seq>/`` with ``rgbs/rgb_%05d.jpg``,
``depths/depth_%05d.png`` (16-bit; metres = value / 65535 * 1000), ``info.npz`` (``trajs_3d``: the SHAPE
``[T, N_points, 3]`` of the trajectory array) and ``anno.npz`` (``intrinsics [T,3,3]``, ``extrinsics [T,4,4]``).

Pose convention (the original's issue #67): ``anno['extrinsics']`` are WORLD-TO-CAMERA matrices; the views
must carry camera-to-world poses like every other dataset, so ``camera_pose = inverse(extrinsics[t])``. This is
what this loader does (``extrinsics_are_w2c=True``, the default); the tests check that both views of a static
scene put the same surface at the same world position.
A sequence is used when ``info.npz`` and ``anno.npz`` exist and it tracks more than ``N`` points.
Preparation: ``bash data/prepare_pointodyssey.sh``.
"""
from __future__ import annotations

import glob
import os
from typing import Any, Dict, List

import numpy as np
import PIL.Image

from monst3r.datasets.base.video_clips import Sequence_, VideoClipDataset, sequence_folders
from monst3r.datasets.camera_geometry import rigid_inverse_np

DEPTH_SCALE = 1000.0 / 65535.0


class PointOdysseyDUSt3R(VideoClipDataset):
    """PointOdyssey pairs; defaults ``dataset_location='data/pointodyssey'``, ``dset='train'``,
    ``strides=[1..9]``."""

    dataset_label = "pointodyssey"
    prepare_script = "data/prepare_pointodyssey.sh"
    default_location = "data/pointodyssey"
    default_dset = "train"
    default_strides = tuple(range(1, 10))

    def __init__(self, *args: Any, extrinsics_are_w2c: bool = True, **kwargs: Any):
        self.extrinsics_are_w2c = extrinsics_are_w2c
        super().__init__(*args, **kwargs)

    def _load_sequences(self) -> List[Sequence_]:
        root = os.path.join(self.dataset_location, self.dset)
        seqs = []
        for path in sequence_folders(root, "*"):
            info, anno = os.path.join(path, "info.npz"), os.path.join(path, "anno.npz")
            if not (os.path.isfile(info) and os.path.isfile(anno)):
                continue
            trajs_shape = np.asarray(np.load(info, allow_pickle=False)["trajs_3d"]).reshape(-1)
            if len(trajs_shape) < 2 or not int(trajs_shape[1]) > self.N:
                continue
            rgbs = sorted(glob.glob(os.path.join(path, "rgbs", "rgb_*.jpg")))
            seqs.append(Sequence_(os.path.basename(path), len(rgbs), dict(path=path, rgbs=rgbs, anno=anno)))
        return seqs

    def _frame_id(self, seq: Sequence_, frame: int) -> str:
        return seq.data["rgbs"][frame]

    def _anno(self, seq: Sequence_):
        if "K" not in seq.data:
            with np.load(seq.data["anno"], allow_pickle=False) as a:
                seq.data["K"] = np.asarray(a["intrinsics"], dtype=np.float64)
                seq.data["E"] = np.asarray(a["extrinsics"], dtype=np.float64)
        return seq.data["K"], seq.data["E"]

    def _load_frame(self, seq: Sequence_, frame: int) -> Dict[str, Any]:
        rgb_path = seq.data["rgbs"][frame]
        name = os.path.basename(rgb_path)
        num = name[len("rgb_"):-len(".jpg")]
        depth16 = np.asarray(PIL.Image.open(os.path.join(seq.data["path"], "depths", f"depth_{num}.png")))
        depth = depth16.astype(np.float32) * np.float32(DEPTH_SCALE)
        K, E = self._anno(seq)
        c2w = rigid_inverse_np(E[frame]) if self.extrinsics_are_w2c else E[frame]
        rgb = np.asarray(PIL.Image.open(rgb_path).convert("RGB"))
        return dict(rgb=rgb, depth=depth, K=K[frame], c2w=c2w, instance=name)
