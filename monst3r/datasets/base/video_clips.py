"""Video-clip datasets (PointOdyssey, TartanAir, Spring, Sintel, DynamicReplica, synthetic): clip enumeration
and stride re-balancing (spec training.md 7.6).

A clip is ``S`` frames ``start + arange(S) * stride`` of one sequence (S = 2: a pair). Subclasses list their
sequences (:meth:`VideoClipDataset._load_sequences`), give the start range of a clip
(:meth:`VideoClipDataset._clip_starts`) and load one frame (:meth:`VideoClipDataset._load_frame`).
"""
from __future__ import annotations

import glob
import logging
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from monst3r.datasets.base.base_stereo_view_dataset import BaseStereoViewDataset, missing_dataset_error

log = logging.getLogger(__name__)

#: Seed of the dedicated generator used for clip resampling (identical on every rank).
RESAMPLE_SEED = 125


def sequence_folders(*pattern: str) -> List[str]:
    """The folders matching the glob ``os.path.join(*pattern)``, sorted (as ``glob`` gives them with a trailing
    separator), without the trailing separator: the sequence folders of a dataset."""
    return [p.rstrip("/" + os.sep) for p in sorted(glob.glob(os.path.join(*pattern, "")))]


def get_stride_distribution(strides: Sequence[int], dist_type: str = "uniform") -> np.ndarray:
    """Sampling weight of each stride (sums to 1): ``uniform``, ``exponential`` (``exp(-arange(n))``) or
    ``linear_a_b`` (``linspace(a, b, n)``)."""
    n = len(strides)
    if dist_type == "uniform":
        w = np.ones(n)
    elif dist_type == "exponential":
        w = np.exp(-np.arange(n, dtype=np.float64))
    elif dist_type.startswith("linear"):
        try:
            _, a, b = dist_type.split("_")
            w = np.linspace(float(a), float(b), n)
        except ValueError:
            raise ValueError(f"bad stride distribution {dist_type!r}: write linear_<start>_<end>") from None
    else:
        raise ValueError(f"unknown stride distribution {dist_type!r} (uniform, exponential, linear_a_b)")
    return w / w.sum()


@dataclass
class Clip:
    """``seq``: index into the dataset's sequence list; ``frames``: frame ids (dataset-specific numbering)."""

    seq: int
    frames: Tuple[int, ...]
    stride: int


@dataclass
class Sequence_:
    """One sequence: a name (used for the label) and per-sequence data the loader needs (paths, arrays)."""

    name: str
    num_frames: int
    data: Dict[str, Any]


class VideoClipDataset(BaseStereoViewDataset):
    """Base of the video datasets. Common arguments (original names and defaults, per dataset):
    ``dataset_location``, ``dset``, ``use_augs`` (unused), ``S`` (frames per clip), ``N`` (unused except
    PointOdyssey's tracked-point check), ``strides``, ``clip_step``, ``quick`` (keep only the 2nd sequence),
    ``verbose``, ``dist_type`` (stride re-balancing), ``clip_step_last_skip``; plus the base-class arguments."""

    dataset_label = "video"
    prepare_script = "data/prepare_training.md"
    default_location = ""
    default_dset = ""
    default_strides: Sequence[int] = (8,)

    def __init__(self, dataset_location: Optional[str] = None, dset: Optional[str] = None, use_augs: bool = False,
                 S: int = 2, N: int = 16, strides: Optional[Sequence[int]] = None, clip_step: int = 2,
                 quick: bool = False, verbose: bool = False, dist_type: Optional[str] = None,
                 clip_step_last_skip: int = 0, *args: Any, **kwargs: Any):
        if args:
            raise TypeError(f"{type(self).__name__} takes keyword arguments only")
        super().__init__(**kwargs)
        self.dataset_location = self.default_location if dataset_location is None else str(dataset_location)
        self.dset = self.default_dset if dset is None else dset
        if self.split is None:
            self.split = self.dset
        self.use_augs = use_augs
        self.S, self.N = int(S), int(N)
        self.strides = list(self.default_strides if strides is None else strides)
        if not self.strides or any(int(s) < 1 for s in self.strides):
            raise ValueError(f"strides must be positive integers, got {strides!r}")
        self.clip_step = int(clip_step)
        self.quick, self.verbose = quick, verbose
        self.dist_type = dist_type
        self.clip_step_last_skip = int(clip_step_last_skip)
        self._check_location()
        self.sequences: List[Sequence_] = self._load_sequences()
        if quick:
            self.sequences = self.sequences[1:2]
        self.clips: List[Clip] = []
        self.stride_counts: Dict[int, int] = {}
        for si, seq in enumerate(self.sequences):
            for stride in self.strides:
                for start in self._clip_starts(seq.num_frames, stride):
                    frames = tuple(int(start + k * stride) for k in range(self.S))
                    self.clips.append(Clip(si, frames, stride))
        for c in self.clips:
            self.stride_counts[c.stride] = self.stride_counts.get(c.stride, 0) + 1
        if len(self.strides) > 1 and self.dist_type is not None:
            self._resample_clips()
        if verbose:
            log.info("%s: %d sequences, %d clips (%s)", type(self).__name__, len(self.sequences), len(self.clips),
                     self.stride_counts)

    # ------------------------------------------------------------------ to implement
    def _check_location(self) -> None:
        """Raise the "prepare it with <script>" error when the dataset folder does not exist."""
        if not os.path.isdir(self.dataset_location):
            raise missing_dataset_error(type(self).__name__, self.dataset_location, self.prepare_script)

    def _load_sequences(self) -> List[Sequence_]:
        raise NotImplementedError

    def _clip_starts(self, n: int, stride: int) -> range:
        """Start frames of the clips of one sequence (PointOdyssey / DynamicReplica bound by default)."""
        return range(0, n - self.S * max(stride, self.clip_step_last_skip) + 1, self.clip_step)

    def _load_frame(self, seq: Sequence_, frame: int) -> Dict[str, Any]:
        """-> ``{'rgb': uint8 [H,W,3] or PIL, 'depth': float32 [H,W], 'K': [3,3], 'c2w': [4,4],
        'instance': str}`` (+ optional ``'extras': {name: float map [H,W]}``)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ clips
    def _resample_clips(self) -> None:
        """Keep ``min(count_i, int(w_i / w_max * count_at_w_max))`` clips of each stride, drawn without
        replacement, grouped by stride in the order of ``strides``."""
        w = get_stride_distribution(self.strides, self.dist_type)
        w = w / w.max()
        counts = [self.stride_counts.get(s, 0) for s in self.strides]
        M = counts[int(np.argmax(w))]
        rng = None if self.legacy_rng else np.random.default_rng(RESAMPLE_SEED if not self.seed else self.seed)
        kept: List[Clip] = []
        for s, wi, ci in zip(self.strides, w, counts):
            ids = np.array([i for i, c in enumerate(self.clips) if c.stride == s], dtype=np.int64)
            k = min(ci, int(wi * M))
            chosen = np.random.choice(ids, k, replace=False) if rng is None else rng.choice(ids, k, replace=False)
            kept.extend(self.clips[int(i)] for i in chosen)
        self.clips = kept

    def __len__(self) -> int:
        return len(self.clips)

    def clip_paths(self, idx: int) -> List[str]:
        """Human-readable identifiers of the frames of clip ``idx`` (for logs and tests)."""
        c = self.clips[idx]
        return [self._frame_id(self.sequences[c.seq], f) for f in c.frames]

    def _frame_id(self, seq: Sequence_, frame: int) -> str:
        return f"{seq.name}/{frame}"

    def _label(self, seq: Sequence_) -> str:
        return seq.name

    def _get_views(self, idx: int, resolution: Tuple[int, int], rng: np.random.Generator) -> List[Dict[str, Any]]:
        clip = self.clips[idx]
        seq = self.sequences[clip.seq]
        views = []
        for frame in clip.frames:
            raw = self._load_frame(seq, frame)
            extra_names = list(raw.get("extras", {}))
            img, depth, K, extras = self._crop_resize_if_necessary(
                raw["rgb"], raw["depth"], raw["K"], resolution, rng, info=f"{seq.name}/{raw['instance']}",
                extras=[raw["extras"][n] for n in extra_names])
            view = dict(img=img, depthmap=depth, camera_pose=np.asarray(raw["c2w"], dtype=np.float32),
                        camera_intrinsics=K, dataset=self.dataset_label, label=self._label(seq),
                        instance=raw["instance"])
            for n, e in zip(extra_names, extras):
                view[n] = e > 0.5
            views.append(view)
        return views
