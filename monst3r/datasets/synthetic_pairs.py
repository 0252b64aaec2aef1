"""Training pairs from the procedural dynamic scenes of :mod:`monst3r.datasets.synthetic` (exact ground truth,
no download).

Two sources:

* in memory (default): ``num_scenes`` scenes ``SyntheticScene(width, height, num_frames, seed=scene_seed + k)``
  rendered on demand (frames are cached per process);
* on disk: ``dataset_location`` is a folder written by ``python -m monst3r.datasets.synthetic --out DIR`` (or a
  folder of such folders): ``00000.png``, ``depth/00000.npy``, ``poses.npy`` (camera-to-world),
  ``intrinsics.npy`` and ``meta.json``.

Clips follow the PointOdyssey rule (``range(0, n - S * stride + 1, clip_step)``). The ``dataset`` field is
``synthetic``; labels are ``scene<seed>`` (or the folder name); instances ``%05d.png``.
Example expression: ``100 @ SyntheticDUSt3R(num_scenes=4, num_frames=8, width=64, height=48, strides=[1, 2],
resolution=[(64, 48)], seed=777)``.
"""
from __future__ import annotations

import glob
import os
from typing import Any, Dict, List, Optional

import numpy as np
import PIL.Image

from monst3r.datasets.base.base_stereo_view_dataset import missing_dataset_error
from monst3r.datasets.base.video_clips import Sequence_, VideoClipDataset


class SyntheticDUSt3R(VideoClipDataset):
    """Synthetic dynamic-scene pairs (see module docstring). Defaults: 4 scenes of 8 frames at 128x96, seed 0,
    3 moving objects, moving camera, strides [1, 2, 3], clip_step 1."""

    dataset_label = "synthetic"
    prepare_script = "python -m monst3r.datasets.synthetic --out DIR"
    default_dset = "train"
    default_strides = (1, 2, 3)

    def __init__(self, *args: Any, dataset_location: Optional[str] = None, num_scenes: int = 4,
                 num_frames: int = 8, width: int = 128, height: int = 96, scene_seed: int = 0,
                 num_objects: int = 3, static_camera: bool = False, clip_step: int = 1, **kwargs: Any):
        self.num_scenes, self.num_frames = int(num_scenes), int(num_frames)
        self.width, self.height = int(width), int(height)
        self.scene_seed, self.num_objects, self.static_camera = int(scene_seed), int(num_objects), bool(static_camera)
        for name, v, lo, hi in (("num_scenes", self.num_scenes, 1, 10_000), ("num_frames", self.num_frames, 2, 10_000),
                                ("width", self.width, 16, 4096), ("height", self.height, 16, 4096),
                                ("num_objects", self.num_objects, 0, 1000)):
            if not lo <= v <= hi:  # not a sizing the synthetic renderer can serve (absurd values exhaust memory)
                raise ValueError(f"{name}={v} must be between {lo} and {hi}")
        self._scenes: Dict[int, Any] = {}
        self._on_disk = dataset_location is not None
        super().__init__(*args, dataset_location="" if dataset_location is None else dataset_location,
                         clip_step=clip_step, **kwargs)

    def _check_location(self) -> None:
        if self._on_disk and not os.path.isdir(self.dataset_location):
            raise missing_dataset_error("SyntheticDUSt3R", self.dataset_location, self.prepare_script)

    def _load_sequences(self) -> List[Sequence_]:
        if not self._on_disk:
            return [Sequence_(f"scene{self.scene_seed + k}", self.num_frames, dict(seed=self.scene_seed + k))
                    for k in range(self.num_scenes)]
        root = self.dataset_location
        folders = [root] if os.path.isfile(os.path.join(root, "poses.npy")) else sorted(
            os.path.dirname(p) for p in glob.glob(os.path.join(root, "*", "poses.npy")))
        seqs = []
        for folder in folders:
            poses = np.load(os.path.join(folder, "poses.npy"))
            seqs.append(Sequence_(os.path.basename(os.path.normpath(folder)), len(poses),
                                  dict(folder=folder, poses=poses,
                                       K=np.load(os.path.join(folder, "intrinsics.npy")))))
        return seqs

    def _clip_starts(self, n: int, stride: int) -> range:
        return range(0, n - self.S * stride + 1, self.clip_step)

    def _scene(self, seed: int):
        if seed not in self._scenes:
            from monst3r.datasets.synthetic import SceneConfig, SyntheticScene

            self._scenes[seed] = SyntheticScene(SceneConfig(
                width=self.width, height=self.height, num_frames=self.num_frames, seed=seed,
                static_camera=self.static_camera, num_objects=self.num_objects))
        return self._scenes[seed]

    def _load_frame(self, seq: Sequence_, frame: int) -> Dict[str, Any]:
        name = f"{frame:05d}.png"
        if not self._on_disk:
            f = self._scene(seq.data["seed"]).frame(frame)
            return dict(rgb=f.rgb, depth=f.depth.astype(np.float32), K=f.intrinsics, c2w=f.pose, instance=name)
        folder = seq.data["folder"]
        rgb = np.asarray(PIL.Image.open(os.path.join(folder, name)).convert("RGB"))
        depth = np.load(os.path.join(folder, "depth", f"{frame:05d}.npy")).astype(np.float32)
        return dict(rgb=rgb, depth=depth, K=seq.data["K"][frame], c2w=seq.data["poses"][frame], instance=name)
