"""Typed settings of one reconstruction: :class:`AlignerConfig` (the ``global_aligner`` /
``compute_global_alignment`` options) and :class:`ReconstructConfig` (pairs, inference, intrinsics and the aligner).

The mapping from command-line flags to optimizer options is written once per entry point:
:meth:`ReconstructConfig.from_demo_args` (``demo.py``, the GUI, streaming) and
:meth:`ReconstructConfig.from_eval_args` (``launch.py --mode=eval_pose``, called by
:meth:`monst3r.eval.config.PoseEvalConfig.from_args`, which holds the rest of the evaluation's settings). Below the
entry points only these dataclasses travel, never an ``argparse.Namespace``. Also here: the parsers of the settings that are text
(``--intrinsics``, the scene-graph string).
"""
from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

import numpy as np
import torch

from monst3r.errors import Monst3rInputError

TORCH_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def scene_graph_string(scenegraph_type: str, winsize: int, refid: int, n_frames: int) -> str:
    """GUI/CLI settings -> make_pairs string (``swinstride`` -> ``swinstride-5-noncyclic``, ...)."""
    if scenegraph_type in ("swin", "swinstride", "swin2stride"):
        return f"{scenegraph_type}-{winsize}-noncyclic"
    if scenegraph_type == "oneref":
        if not 0 <= refid < n_frames:
            raise Monst3rInputError(f"--refid {refid} is out of range for {n_frames} frames")
        return f"oneref-{refid}"
    if scenegraph_type == "complete":
        return "complete"
    raise Monst3rInputError(f"unknown --scenegraph_type {scenegraph_type!r}: use complete, swin, swinstride, "
                            "swin2stride or oneref")


def _numbers(text: str, what: str) -> List[float]:
    """Numbers separated by commas and/or white space; a one-line error names the first bad token."""
    tokens = [t for t in re.split(r"[\s,]+", text.strip()) if t]
    vals = []
    for t in tokens:
        try:
            vals.append(float(t))
        except ValueError:
            raise Monst3rInputError(f"{what}: {t[:40]!r} is not a number; give a focal 'f', 'fx,fy,cx,cy' or a "
                                    "text file with a 3x3 K") from None
    return vals


def parse_intrinsics(text: Optional[str], width: Optional[int] = None, height: Optional[int] = None
                     ) -> Optional[np.ndarray]:
    """``--intrinsics``: ``"f"`` (focal in working-resolution pixels, pp at the centre), ``"fx,fy,cx,cy"``, or a
    path to a text file with a 3x3 K (9 numbers). Returns ``K [3,3]`` or None (option not given).

    Every value must be a finite positive number (fx, fy, cx, cy), K must be ``[[fx,0,cx],[0,fy,cy],[0,0,1]]``,
    and with ``width``/``height`` known the principal point must lie inside the working image. Any other input
    (NaN, inf, 0, negative, wrong count, unparsable or binary file, empty) is a one-line
    :class:`Monst3rInputError`. Without ``width`` the single-focal form puts the centre at (0.5, 0.5) (check only).
    """
    if text is None:
        return None
    text = str(text)
    hint = "give a focal 'f', 'fx,fy,cx,cy' or a text file with a 3x3 K"
    if not text.strip():
        raise Monst3rInputError(f"--intrinsics is empty: {hint}")
    if os.path.exists(text):
        if not os.path.isfile(text):
            raise Monst3rInputError(f"--intrinsics {text} is not a file: {hint}")
        try:
            with open(text, "rb") as f:
                raw = f.read(1 << 16)
        except OSError as exc:
            raise Monst3rInputError(f"--intrinsics {text}: cannot read it ({exc.strerror or exc})") from None
        try:
            body = raw.decode("utf-8")
        except UnicodeDecodeError:
            body = None
        if body is None or "\x00" in body or len(raw) >= 1 << 16:
            raise Monst3rInputError(f"--intrinsics {text} is not a small text file with a 3x3 K: {hint}")
        body = "\n".join(line.split("#", 1)[0] for line in body.splitlines())
        vals = _numbers(body, f"--intrinsics file {text}")
        if len(vals) != 9:
            raise Monst3rInputError(f"--intrinsics file {text} must hold 9 numbers (a 3x3 K), found {len(vals)}")
        K = np.array(vals, np.float64).reshape(3, 3)
        what = f"--intrinsics file {text}"
    else:
        if os.sep in text or text.lower().endswith((".txt", ".npy", ".csv")):
            raise Monst3rInputError(f"--intrinsics file {text} does not exist: {hint}")
        vals = _numbers(text, f"--intrinsics {text[:60]!r}")
        if len(vals) == 1:
            vals = [vals[0], vals[0], (width or 1) / 2, (height or 1) / 2]
        if len(vals) != 4:
            raise Monst3rInputError(f"--intrinsics {text[:60]!r}: {len(vals)} numbers; {hint}")
        fx, fy, cx, cy = vals
        K = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], np.float64)
        what = f"--intrinsics {text[:60]!r}"
    if not np.isfinite(K).all():
        raise Monst3rInputError(f"{what}: the values must be finite numbers (no nan/inf)")
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    if min(fx, fy, cx, cy) <= 0:
        raise Monst3rInputError(f"{what}: fx, fy, cx, cy must be positive (got {fx:g}, {fy:g}, {cx:g}, {cy:g})")
    if np.abs(K[[0, 1, 2, 2], [1, 0, 0, 1]]).max() > 1e-9 or abs(K[2, 2] - 1) > 1e-9:
        raise Monst3rInputError(f"{what}: K must be [[fx,0,cx],[0,fy,cy],[0,0,1]] (no skew)")
    if width is not None and height is not None and not (cx < width and cy < height):
        raise Monst3rInputError(f"{what}: principal point ({cx:g}, {cy:g}) outside the {width}x{height} working "
                                "image; intrinsics are in pixels of the working resolution (--image_size)")
    return K


@dataclass(frozen=True)
class AlignerConfig:
    """Options of ``global_aligner(..., mode=PointCloudOptimizer)`` and of its alignment call.

    A field left ``None`` is not passed, so the optimizer's own default applies (the demo and the evaluation set
    different subsets of options, exactly as the original's two call sites do).
    """

    niter: int = 300  # num_total_iter of the optimizer and niter of the alignment
    schedule: str = "linear"
    lr: float = 0.01
    init: str = "mst"
    window_wise: bool = False  # compute_window_wise_alignment instead of compute_global_alignment
    flow_loss_weight: float = 0.0  # 0: no optical flow at all (no flow network is loaded)
    flow_weights: str = "searaft"  # the flow network loaded when none is given (third_party.raft.load_flow_model)
    shared_focal: Optional[bool] = None
    temporal_smoothing_weight: Optional[float] = None
    translation_weight: Optional[float] = None
    flow_loss_start_epoch: Optional[float] = None
    flow_loss_thre: Optional[float] = None
    flow_loss_fn: Optional[str] = None
    depth_regularize_weight: Optional[float] = None
    motion_mask_thre: Optional[float] = None
    pxl_thre: Optional[float] = None
    sintel_ckpt: Optional[bool] = None
    use_self_mask: Optional[bool] = None
    batchify: Optional[bool] = None
    window_size: Optional[int] = None
    window_overlap_ratio: Optional[float] = None
    sam2_mask_refine: Optional[bool] = None
    sam2_checkpoint: Optional[str] = None

    _ALIGN_ONLY = ("niter", "schedule", "lr", "init", "flow_weights")

    def aligner_kwargs(self) -> Dict[str, Any]:
        """Keyword options of ``global_aligner`` (``num_total_iter`` = ``niter``; ``None`` fields left out)."""
        kw = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
              if f.name not in self._ALIGN_ONLY and getattr(self, f.name) is not None}
        kw["num_total_iter"] = self.niter
        return kw

    def alignment_kwargs(self) -> Dict[str, Any]:
        """Keyword options of ``compute_global_alignment`` / ``compute_window_wise_alignment``."""
        return dict(init=self.init, niter=self.niter, schedule=self.schedule, lr=self.lr)


@dataclass(frozen=True)
class ReconstructConfig:
    """Everything :func:`monst3r.reconstruct.reconstruct` needs besides the views and the networks."""

    aligner: AlignerConfig = AlignerConfig()
    scenegraph_type: str = "swinstride"  # with winsize / refid -> scene_graph_string (when scene_graph is None)
    winsize: int = 5
    refid: int = 0
    scene_graph: Optional[str] = None  # an explicit make_pairs string (the evaluation adapts it per sequence)
    batch_size: int = 16
    dtype: str = "fp32"  # key of TORCH_DTYPES (network precision)
    verbose: bool = True
    intrinsics: Optional[str] = None  # --intrinsics text, parsed at the working resolution (parse_intrinsics)
    fixed_focals: Optional[np.ndarray] = None  # [N] focals held fixed (the evaluation's --use_gt_focal)
    shard_inference: bool = True  # pairs shared by the processes of a torchrun group (demo); eval: per process
    clean_pair_viewer: bool = False  # two frames: clean_pointcloud() also on the PairViewer (the evaluation)
    empty_cache_auto: bool = False  # the evaluation's rule: empty_cache for >= 80 frames and > 600 pairs
    fail_on_divergence: bool = False  # raise DivergedError on a non-finite loss or poses (the evaluation)
    window_overlap_ratio: float = 0.5  # streaming: overlap of consecutive chunks (fraction of window_size)

    @property
    def torch_dtype(self) -> Optional[torch.dtype]:
        """Network precision for ``inference(dtype=...)``; None = float32."""
        return TORCH_DTYPES[self.dtype]

    def pair_graph(self, n_frames: int) -> str:
        """The ``make_pairs`` scene-graph string for ``n_frames`` views."""
        if self.scene_graph is not None:
            return self.scene_graph
        return scene_graph_string(self.scenegraph_type, self.winsize, self.refid, n_frames)

    def with_aligner(self, **changes) -> "ReconstructConfig":
        return dataclasses.replace(self, aligner=dataclasses.replace(self.aligner, **changes))

    @classmethod
    def from_demo_args(cls, args) -> "ReconstructConfig":
        """``demo.py`` options (after ``pipeline.validate_args``) -> settings; the demo's flag mapping, once."""
        window_wise = bool(getattr(args, "window_wise", False))
        use_user_masks = bool(args.dynamic_masks) or args.use_gt_davis_masks or args.use_gt_mask
        aligner = AlignerConfig(
            niter=args.niter, schedule=args.schedule, lr=0.01, init="mst", window_wise=window_wise,
            flow_loss_weight=args.flow_loss_weight, flow_weights=args.flow_weights or "searaft",
            shared_focal=args.shared_focal, temporal_smoothing_weight=args.temporal_smoothing_weight,
            translation_weight=float(args.translation_weight), flow_loss_start_epoch=args.flow_loss_start_iter,
            flow_loss_thre=args.flow_loss_threshold, use_self_mask=not use_user_masks,
            batchify=not (getattr(args, "not_batchify", False) or window_wise), window_size=args.window_size,
            window_overlap_ratio=args.window_overlap_ratio, sam2_mask_refine=not args.no_sam2,
            sam2_checkpoint=args.sam2_checkpoint)
        return cls(aligner=aligner, scenegraph_type=args.scenegraph_type, winsize=args.winsize, refid=args.refid,
                   batch_size=args.batch_size, dtype=getattr(args, "dtype", "fp32"), verbose=not args.silent,
                   intrinsics=args.intrinsics, window_overlap_ratio=args.window_overlap_ratio)

    @classmethod
    def from_eval_args(cls, args, sintel_flow: bool = False) -> "ReconstructConfig":
        """``launch.py --mode=eval_pose`` options -> settings (optimizer spec §11); the evaluation's flag mapping,
        once. ``sintel_flow``: the dataset uses RAFT-sintel flow (``EvalDataset.sintel_flow``). The scene graph
        and the GT focals are per sequence: set them with ``dataclasses.replace``."""
        aligner = AlignerConfig(
            niter=int(args.n_iter), schedule=args.pose_schedule, lr=0.01, init="mst",
            flow_loss_weight=float(args.flow_loss_weight),
            shared_focal=not args.not_shared_focal and not args.use_gt_focal, flow_loss_fn=args.flow_loss_fn,
            depth_regularize_weight=float(args.depth_regularize_weight),
            temporal_smoothing_weight=float(args.temporal_smoothing_weight),
            motion_mask_thre=float(args.motion_mask_thre), flow_loss_start_epoch=float(args.flow_loss_start_epoch),
            flow_loss_thre=float(args.flow_loss_thre), translation_weight=float(args.translation_weight),
            use_self_mask=not args.use_gt_mask, sam2_mask_refine=bool(args.sam2_mask_refine),
            pxl_thre=float(args.pxl_thresh))
        return cls(aligner=aligner, scenegraph_type=args.scene_graph_type, batch_size=1, verbose=not args.silent,
                   shard_inference=False, clean_pair_viewer=True, empty_cache_auto=True,
                   fail_on_divergence=True).with_sintel_flow(sintel_flow)

    def with_sintel_flow(self, sintel_flow: bool) -> "ReconstructConfig":
        """The evaluation's flow network per dataset: RAFT-sintel (``sintel_ckpt``) when ``sintel_flow``
        (``EvalDataset.sintel_flow``), else SEA-RAFT."""
        return self.with_aligner(flow_weights="raft-sintel" if sintel_flow else "searaft",
                                 sintel_ckpt=bool(sintel_flow))
