"""Dynamic Replica (spec training.md 7.7; not used by the README recipe).

``<root>/frame_annotations_train.json``: a list of frame records with ``sequence_name``, ``frame_number``,
``image.path`` (relative to the root), ``depth.path`` (16-bit PNG whose bits are float16 depth), ``viewpoint``
``{R, T, focal_length, principal_point, intrinsics_format}`` (PyTorch3D NDC conventions).

Intrinsics from NDC: ``ndc_isotropic`` scales by ``min(W, H) / 2``, ``ndc_norm_image_bounds`` by
``(W / 2, H / 2)``; principal point ``(W/2, H/2) - c_ndc * scale``. ``camera_pose = [R^T, -R^T T]`` as the
original (with the record's ``R`` used as stored). The ``dataset`` field is ``dynamic_replica`` (the original
labels it ``pointodyssey``). Preparation: ``bash data/prepare_dynamic_replica.sh``.
"""
from __future__ import annotations

import json
import os
from collections import defaultdict
from typing import Any, Dict, List

import numpy as np
import PIL.Image

from monst3r.datasets.base.video_clips import Sequence_, VideoClipDataset


def ndc_to_pixel_intrinsics(focal, principal_point, W: int, H: int, fmt: str) -> np.ndarray:
    """PyTorch3D NDC focal / principal point -> pixel ``K [3,3]``."""
    if fmt == "ndc_isotropic":
        scale = np.array([min(W, H) / 2.0] * 2)
    elif fmt == "ndc_norm_image_bounds":
        scale = np.array([W / 2.0, H / 2.0])
    else:
        raise ValueError(f"unknown intrinsics format {fmt!r}")
    f = np.asarray(focal, dtype=np.float64) * scale
    c = np.array([W / 2.0, H / 2.0]) - np.asarray(principal_point, dtype=np.float64) * scale
    return np.array([[f[0], 0, c[0]], [0, f[1], c[1]], [0, 0, 1.0]])


def read_float16_png(path: str) -> np.ndarray:
    """16-bit PNG whose raw bits are float16 -> float32 ``[H, W]``."""
    raw = np.asarray(PIL.Image.open(path)).astype(np.uint16)
    return raw.view(np.float16).astype(np.float32)


class DynamicReplicaDUSt3R(VideoClipDataset):
    """Dynamic Replica pairs; defaults ``dataset_location='data/dynamic_replica'``, ``strides=[1..9]``."""

    dataset_label = "dynamic_replica"
    prepare_script = "data/prepare_dynamic_replica.sh"
    default_location = "data/dynamic_replica"
    default_dset = "train"
    default_strides = tuple(range(1, 10))

    def _load_sequences(self) -> List[Sequence_]:
        ann = os.path.join(self.dataset_location, f"frame_annotations_{self.dset}.json")
        if not os.path.isfile(ann):
            return []
        with open(ann) as f:
            records = json.load(f)
        by_seq: Dict[str, List[Dict[str, Any]]] = defaultdict(list)
        for r in records:
            by_seq[r["sequence_name"]].append(r)
        seqs = []
        for name in sorted(by_seq):
            recs = sorted(by_seq[name], key=lambda r: (r.get("frame_number", 0), r["image"]["path"]))
            seqs.append(Sequence_(name, len(recs), dict(records=recs)))
        return seqs

    def _frame_id(self, seq: Sequence_, frame: int) -> str:
        return os.path.join(self.dataset_location, seq.data["records"][frame]["image"]["path"])

    def _load_frame(self, seq: Sequence_, frame: int) -> Dict[str, Any]:
        rec = seq.data["records"][frame]
        img_path = os.path.join(self.dataset_location, rec["image"]["path"])
        rgb = np.asarray(PIL.Image.open(img_path).convert("RGB"))
        depth = read_float16_png(os.path.join(self.dataset_location, rec["depth"]["path"]))
        H, W = rgb.shape[:2]
        vp = rec["viewpoint"]
        K = ndc_to_pixel_intrinsics(vp["focal_length"], vp["principal_point"], W, H,
                                    vp.get("intrinsics_format", "ndc_isotropic"))
        R = np.asarray(vp["R"], dtype=np.float64)
        T = np.asarray(vp["T"], dtype=np.float64)
        c2w = np.eye(4)
        c2w[:3, :3] = R.T
        c2w[:3, 3] = -R.T @ T
        return dict(rgb=rgb, depth=depth, K=K, c2w=c2w, instance=os.path.basename(img_path))
