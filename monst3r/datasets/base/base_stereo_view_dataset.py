"""The view-dataset contract (spec training.md 7.1, 7.2): every training dataset returns, for an index
``i`` or ``(i, aspect_ratio_index)``, a list of two view dicts.

Per view (before collation): ``img`` float32 ``[3,H,W]`` in [-1,1] (landscape), ``depthmap`` float32 ``[H,W]``,
``camera_pose`` float32 ``[4,4]`` camera-to-world (OpenCV axes), ``camera_intrinsics`` float32 ``[3,3]``,
``dataset``/``label``/``instance`` str, ``idx`` ``(i, ar, view)``, ``true_shape`` int32 ``(H, W)`` before the
landscape transposition, ``z_far``, ``pts3d`` float32 ``[H,W,3]`` (world), ``valid_mask`` bool ``[H,W]``, ``rng``
int (a 32-bit checksum of the item RNG), plus dataset-specific keys (Sintel's ``dynamic_mask``).

Subclasses implement ``__len__`` and ``_get_views(idx, resolution, rng) -> list of dicts`` with ``img`` (PIL),
``depthmap``, ``camera_intrinsics``, ``camera_pose``, ``dataset``, ``label``, ``instance`` (use
:meth:`_crop_resize_if_necessary` to bring a raw view to ``resolution``).

Randomness: with a (non-zero) ``seed`` every item uses ``default_rng(seed + i)``; otherwise one generator per
process, created from ``torch.initial_seed()`` and re-created at every :meth:`set_epoch` (so a run resumed at an
epoch boundary sees the same augmentations as an uninterrupted one when the caller re-seeds torch per epoch).
``legacy_rng=True`` reproduces the original's draws from NumPy's global RNG (``aug_focal``'s Beta draw here, the
clip resampling in the video datasets) for comparisons with the original's outputs.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from monst3r.datasets.base.cropping import crop_resize_view
from monst3r.datasets.base.easy_dataset import EasyDataset
from monst3r.datasets.base.transforms import ImgNorm, resolve_transform
from monst3r.errors import Monst3rInputError
from monst3r.datasets.camera_geometry import depthmap_to_world_points

log = logging.getLogger(__name__)

Resolution = Union[int, Tuple[int, int], Sequence[Union[int, Tuple[int, int]]]]
_ALLOWED_DTYPES = (np.bool_, np.float32, np.int32, np.int64, np.uint8)


def missing_dataset_error(name: str, path: str, script: str) -> Monst3rInputError:
    """The error for a dataset root that does not exist: names the preparation script."""
    return Monst3rInputError(
        f"{name}: dataset folder {path!r} not found. Download and prepare it with {script} "
        f"(see data/prepare_training.md), or pass its location with the dataset's root argument.")


#: Largest training resolution side (not in the original: (100000, 100000) would only exhaust the memory later).
MAX_RESOLUTION = 4096


def parse_resolutions(resolution: Resolution) -> List[Tuple[int, int]]:
    """``224`` -> ``[(224, 224)]``; ``(512, 288)`` -> ``[(512, 288)]``; lists of those -> list of ``(W, H)``.
    Every entry must be landscape or square (``W >= H``)."""
    if resolution is None:
        raise ValueError("a resolution is required, e.g. resolution=[(512, 288), (512, 384)]")
    if not isinstance(resolution, list):
        resolution = [resolution]
    out = []
    for r in resolution:
        if isinstance(r, (int, np.integer)) and not isinstance(r, bool):
            w = h = int(r)
        else:
            try:
                w, h = r
            except (TypeError, ValueError):
                raise ValueError(f"bad resolution {r!r}: use an int or a (W, H) pair") from None
        if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in (w, h)):
            raise ValueError(f"bad resolution {r!r}: W and H must be integers")
        if not (16 <= h <= w <= MAX_RESOLUTION):
            raise ValueError(f"resolution {r!r}: W and H must be between 16 and {MAX_RESOLUTION} pixels"
                             if w >= h else f"resolution {r!r} must be landscape or square (W >= H)")
        out.append((int(w), int(h)))
    return out


def transpose_to_landscape(view: Dict[str, Any]) -> None:
    """Portrait views (``true_shape`` H > W): swap the image axes (``[3,W,H]``), those of every ``[H,W]`` map
    and of the point map, and rows 0/1 of the intrinsics (DUSt3R convention); in place. Unlike the original the
    ``dynamic_mask`` is transposed too."""
    height, width = (int(v) for v in view["true_shape"])
    if width < height:
        view["img"] = view["img"].swapaxes(1, 2)
        for k in ("valid_mask", "depthmap", "pts3d", "dynamic_mask"):
            if k in view:
                view[k] = view[k].swapaxes(0, 1)
        view["camera_intrinsics"] = view["camera_intrinsics"][[1, 0, 2]]


class BaseStereoViewDataset(EasyDataset):
    """Base of the two-view training datasets (keyword-only constructor; see module docstring)."""

    num_views = 2

    def __init__(self, *, split: Optional[str] = None, resolution: Resolution = None,
                 transform: Union[str, Callable, None] = ImgNorm, aug_crop: Union[int, bool] = False,
                 aug_focal: Union[float, bool] = False, z_far: float = 0, seed: Optional[int] = None,
                 legacy_rng: bool = False):
        self.split = split
        self._resolutions = parse_resolutions(resolution)
        self.transform = resolve_transform(transform)
        self.aug_crop = aug_crop
        if aug_focal and not 0 < float(aug_focal) <= 1:
            raise ValueError(f"aug_focal must be in (0, 1], got {aug_focal!r}")
        self.aug_focal = aug_focal
        self.z_far = z_far
        self.seed = seed
        self.legacy_rng = bool(legacy_rng)
        self._rng: Optional[np.random.Generator] = None

    # ------------------------------------------------------------------ description
    def __len__(self) -> int:
        raise NotImplementedError

    def get_stats(self) -> str:
        return f"{len(self)} pairs"

    def __repr__(self) -> str:
        res = "[" + ";".join(f"{w}x{h}" for w, h in self._resolutions) + "]"
        transform = repr(self.transform).replace("\n", "").replace("   ", "")
        return (f"{type(self).__name__}({self.get_stats()},split={self.split!r},seed={self.seed},"
                f"resolutions={res},transform={transform})")

    # ------------------------------------------------------------------ items
    def set_epoch(self, epoch: int) -> None:
        self._rng = None  # re-created from torch.initial_seed() at the next unseeded item

    def _get_views(self, idx: int, resolution: Tuple[int, int], rng: np.random.Generator) -> List[Dict[str, Any]]:
        raise NotImplementedError

    def _item_rng(self, idx: int) -> np.random.Generator:
        if self.seed:
            self._rng = np.random.default_rng(seed=self.seed + idx)
        elif self._rng is None:
            self._rng = np.random.default_rng(seed=torch.initial_seed())
        return self._rng

    def _beta_draw(self) -> Optional[Callable[[], float]]:
        return (lambda: np.random.beta(0.5, 0.5)) if self.legacy_rng else None

    def _crop_resize_if_necessary(self, image, depthmap: np.ndarray, intrinsics: np.ndarray,
                                  resolution: Tuple[int, int], rng: np.random.Generator, info: str = "",
                                  extras: Sequence[np.ndarray] = ()):
        """Bring one raw view to ``resolution`` (see :func:`crop_resize_view`); returns
        ``(PIL image, depth, K, extras)``."""
        return crop_resize_view(image, depthmap, intrinsics, resolution, rng, aug_focal=self.aug_focal,
                                aug_crop=self.aug_crop, beta_draw=self._beta_draw(), info=info, extras=extras)

    def __getitem__(self, idx) -> List[Dict[str, Any]]:
        if isinstance(idx, tuple):
            idx, ar_idx = int(idx[0]), int(idx[1])
        else:
            if len(self._resolutions) != 1:
                raise ValueError("a dataset with several resolutions must be indexed with (index, aspect ratio)")
            idx, ar_idx = int(idx), 0
        rng = self._item_rng(idx)
        resolution = self._resolutions[ar_idx]
        views = self._get_views(idx, resolution, rng)
        if len(views) != self.num_views:
            raise RuntimeError(f"{type(self).__name__} returned {len(views)} views instead of {self.num_views}")
        for v, view in enumerate(views):
            view["idx"] = (idx, ar_idx, v)
            width, height = view["img"].size
            view["true_shape"] = np.int32((height, width))
            view["img"] = self.transform(view["img"])
            if view.get("camera_pose") is None:
                view["camera_pose"] = np.full((4, 4), np.nan, dtype=np.float32)
            elif not np.isfinite(view["camera_pose"]).all():
                raise ValueError(f"non-finite camera pose in {view.get('label')}/{view.get('instance')}")
            view["camera_pose"] = np.asarray(view["camera_pose"], dtype=np.float32)
            view["camera_intrinsics"] = np.asarray(view["camera_intrinsics"], dtype=np.float32)
            view["depthmap"] = np.asarray(view["depthmap"], dtype=np.float32)
            if not np.isfinite(view["depthmap"]).all():
                raise ValueError(f"non-finite depth in {view.get('label')}/{view.get('instance')}")
            view["z_far"] = self.z_far
            pts3d, valid = depthmap_to_world_points(view["depthmap"], view["camera_intrinsics"],
                                                    view["camera_pose"].astype(np.float64), self.z_far or 0)
            view["pts3d"] = pts3d
            view["valid_mask"] = valid & np.isfinite(pts3d).all(axis=-1)
            for k, val in view.items():
                if isinstance(val, np.ndarray) and val.dtype.type not in _ALLOWED_DTYPES:
                    raise TypeError(f"view key {k!r} has dtype {val.dtype}")
        for view in views:
            transpose_to_landscape(view)
        for view in views:
            view["rng"] = int.from_bytes(rng.bytes(4), "big")
        return views
