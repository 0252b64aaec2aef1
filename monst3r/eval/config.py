"""Typed settings of the evaluation entry points, built once from the parsed arguments.

``launch.py --mode=eval_pose`` / ``eval_depth`` (and ``python -m monst3r.eval.pose | depth``) parse the flags
(:mod:`monst3r.eval.args`) and call ``main(args)``; ``main`` builds :class:`PoseEvalConfig` /
:class:`DepthEvalConfig` with ``from_args`` (the one place that reads the evaluation's ``argparse.Namespace``) and
only these frozen dataclasses travel further down. The optimizer settings of the pose evaluation are
:class:`monst3r.config.ReconstructConfig` (:meth:`~monst3r.config.ReconstructConfig.from_eval_args`).
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple

from monst3r.config import ReconstructConfig
from monst3r.model_loading import OFFICIAL_MODEL_STRING

__all__ = ["EvalConfig", "DepthEvalConfig", "PoseEvalConfig"]


@dataclass(frozen=True)
class EvalConfig:
    """What both evaluations share: the network (``--model``, ``--pretrained``, strict unless
    ``--pretrained_strict 0``), ``--device``, ``--seed``, ``--cudnn_benchmark``; what is read and where it is
    written (``--eval_dataset``, ``--eval_data_root``, ``--output_dir``, ``--seq_list``, ``--full_seq``); how frames
    are loaded (``--eval_image_size``: long side, ``--no_crop``: resize instead of centre crop); ``verbose`` = not
    ``--silent``."""

    model: str = OFFICIAL_MODEL_STRING
    pretrained: Optional[str] = None
    pretrained_strict: bool = True
    device: str = "auto"
    seed: int = 0
    cudnn_benchmark: bool = False
    eval_dataset: str = "sintel"
    output_dir: str = "./results/tmp"
    eval_data_root: str = "."
    seq_list: Optional[Tuple[str, ...]] = None
    full_seq: bool = False
    image_size: int = 512
    crop: bool = True
    verbose: bool = True

    @staticmethod
    def shared_fields(args: argparse.Namespace) -> Dict[str, Any]:
        """The fields of :class:`EvalConfig` from the parsed flags (the additions ``--eval_data_root`` and
        ``--eval_image_size`` may be missing: training's parser lacks them)."""
        seq_list = getattr(args, "seq_list", None)
        return dict(model=args.model, pretrained=getattr(args, "pretrained", None) or None,
                    pretrained_strict=bool(getattr(args, "pretrained_strict", 1)),
                    device=getattr(args, "device", "auto") or "auto", seed=int(args.seed),
                    cudnn_benchmark=bool(getattr(args, "cudnn_benchmark", False)), eval_dataset=args.eval_dataset,
                    output_dir=str(args.output_dir), eval_data_root=str(getattr(args, "eval_data_root", ".") or "."),
                    seq_list=None if seq_list is None else tuple(seq_list), full_seq=bool(args.full_seq),
                    image_size=int(getattr(args, "eval_image_size", 512)), crop=not args.no_crop,
                    verbose=not args.silent)


@dataclass(frozen=True)
class DepthEvalConfig(EvalConfig):
    """Settings of the single-frame depth evaluation (``--mode=eval_depth``): its inputs only."""

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "DepthEvalConfig":
        return cls(**cls.shared_fields(args))


@dataclass(frozen=True)
class PoseEvalConfig(EvalConfig):
    """Settings of the pose evaluation (``--mode=eval_pose``, also run during training).

    reconstruct: the optimizer settings (:meth:`ReconstructConfig.from_eval_args`; the flow network is chosen per
    dataset with :meth:`ReconstructConfig.with_sintel_flow`, the scene graph and GT focals per sequence);
    stride: ``--pose_eval_stride``; seed: ``--seed`` (per-sequence seeds derive from it); max_seqs:
    ``--eval_max_seqs`` (None: all); use_gt_focal / use_gt_mask: ``--use_gt_focal`` / ``--use_gt_mask``;
    save_qualitative: ``--save_pose_qualitative``.
    """

    reconstruct: ReconstructConfig = field(default_factory=ReconstructConfig)
    stride: int = 1
    max_seqs: Optional[int] = None
    use_gt_focal: bool = False
    use_gt_mask: bool = False
    save_qualitative: bool = False

    @property
    def flow_loss_weight(self) -> float:
        """0: the optimizer runs without optical flow (no flow network is loaded)."""
        return self.reconstruct.aligner.flow_loss_weight

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "PoseEvalConfig":
        max_seqs = getattr(args, "eval_max_seqs", None)
        return cls(**cls.shared_fields(args), reconstruct=ReconstructConfig.from_eval_args(args),
                   stride=int(args.pose_eval_stride),
                   max_seqs=int(max_seqs) if max_seqs else None, use_gt_focal=bool(args.use_gt_focal),
                   use_gt_mask=bool(args.use_gt_mask), save_qualitative=bool(args.save_pose_qualitative))
