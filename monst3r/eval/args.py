"""Command-line arguments of the evaluation (``launch.py --mode=eval_pose | eval_depth``).

:func:`add_shared_arguments` declares, once, the flags of the original that both ``launch.py``'s training parser
and the evaluation parser have (defaults exactly as there, evaluation spec §1 / training spec §2).
:func:`add_eval_arguments` adds them (when the parser lacks them) plus a few additions, so ``launch.py`` can call
it after declaring its training flags. :func:`build_eval_parser` is the stand-alone parser of
``python -m monst3r.eval.pose`` / ``python -m monst3r.eval.depth``.

Additions (not in the original):

* ``--eval_data_root`` (``.``): folder that holds ``data/`` (the original reads ``data/...`` relative to the
  working directory);
* ``--eval_image_size`` (512): long side of the loaded frames (the original hard-codes 512; tests use tiny frames);
* ``--device`` (``auto``): cuda when available, else cpu;
* ``--eval_max_seqs`` (None): evaluate only the first K sequences of the list (smoke runs).
"""
from __future__ import annotations

import argparse
from typing import Any, Optional, Sequence

from monst3r.model_loading import OFFICIAL_MODEL_STRING

__all__ = ["EVAL_DATASET_CHOICES", "DEFAULT_MODEL", "MODES", "add_shared_arguments", "add_eval_arguments",
           "build_eval_parser", "eval_defaults"]

EVAL_DATASET_CHOICES = ("davis", "kitti", "bonn", "scannet", "tum", "nyu", "sintel", "synthetic")

#: The evaluation parser's default ``--model`` (the MonST3R ViT-L / DPT network, whitespace normalised).
DEFAULT_MODEL = OFFICIAL_MODEL_STRING


def _flag(name: str, **kw: Any) -> tuple[str, dict[str, Any]]:
    return name, kw


#: The values of ``--mode``.
MODES = ("train", "eval_pose", "eval_depth")

# The flags both parsers declare (``launch.py``'s training parser and the stand-alone evaluation parser), once.
# (flag, argparse keyword arguments); order = help order. ``--model``'s default and two ``choices`` differ between
# the parsers and are filled in by :func:`add_shared_arguments` (see there).
_SHARED: tuple[tuple[str, dict[str, Any]], ...] = (
    _flag("--model", type=str, help="network constructor string (parsed safely)"),
    _flag("--pretrained", default=None,
          help="checkpoint (.pth with 'model', model folder or .safetensors); training ignores it when resuming"),
    _flag("--seed", default=0, type=int,
          help="random seed (per process: seed + rank; per-sequence seeds of the evaluation derive from it)"),
    _flag("--cudnn_benchmark", action="store_true", default=False, help="set cudnn.benchmark"),
    _flag("--device", default="auto", type=str,
          help="auto (cuda:LOCAL_RANK when CUDA is available, else cpu), cpu, cuda, cuda:N, mps"),
    _flag("--mode", default="train", type=str,
          help="train / eval_pose / eval_depth (the original trained on any other value; we refuse it)"),
    _flag("--eval_dataset", type=str, default="sintel", choices=EVAL_DATASET_CHOICES, help="dataset to evaluate"),
    _flag("--output_dir", default="./results/tmp", type=str, help="output folder"),
    _flag("--pose_eval_stride", default=1, type=int, help="frame stride of the pose evaluation"),
    _flag("--scene_graph_type", default="swinstride-5-noncyclic", type=str, help="pair graph"),
    _flag("--n_iter", default=300, type=int, help="global-alignment iterations"),
    _flag("--pose_schedule", default="linear", type=str, help="learning-rate schedule of the alignment"),
    _flag("--temporal_smoothing_weight", default=0.01, type=float, help="temporal smoothing weight"),
    _flag("--translation_weight", default=1, type=float, help="translation weight"),
    _flag("--flow_loss_weight", default=0.01, type=float, help="flow loss weight"),
    _flag("--flow_loss_fn", default="smooth_l1", type=str, help="flow loss function"),
    _flag("--flow_loss_start_epoch", default=0.1, type=float, help="fraction of n_iter before the flow loss"),
    _flag("--flow_loss_thre", default=20, type=float, help="flow loss threshold"),
    _flag("--pxl_thresh", default=50.0, type=float, help="pixel threshold"),
    _flag("--motion_mask_thre", default=0.35, type=float, help="motion mask threshold"),
    _flag("--depth_regularize_weight", default=0.0, type=float, help="depth regularisation weight"),
    _flag("--not_shared_focal", action="store_true", default=False, help="one focal per frame"),
    _flag("--use_gt_focal", action="store_true", default=False, help="Sintel: preset the GT focals (focal.txt)"),
    _flag("--use_gt_mask", action="store_true", default=False, help="use the GT dynamic masks, not self masks"),
    _flag("--sam2_mask_refine", action="store_true", default=False, help="refine the motion masks with SAM2"),
    _flag("--save_pose_qualitative", action="store_true", default=False, help="write <seq>.glb per sequence"),
    _flag("--silent", action="store_true", default=False, help="no progress bars"),
    _flag("--full_seq", action="store_true", default=False, help="every sub-folder is a sequence"),
    _flag("--seq_list", nargs="+", default=None, help="evaluate only these sequences"),
    _flag("--no_crop", action="store_true", default=False, help="resize instead of centre-crop (video depth)"),
)

# flags of the stand-alone evaluation parser only (additions, see the module docstring)
_EVAL_ONLY: tuple[tuple[str, dict[str, Any]], ...] = (
    _flag("--eval_data_root", type=str, default=".", help="folder holding data/ (default: working directory)"),
    _flag("--eval_image_size", type=int, default=512, help="long side of the loaded frames (original: 512)"),
    _flag("--eval_max_seqs", type=int, default=None, help="evaluate only the first K sequences"),
)


def add_shared_arguments(parser: argparse.ArgumentParser, *, model_default: str, training: bool
                         ) -> argparse._ArgumentGroup:
    """Declare the flags shared by training and evaluation in one argument group of ``parser``.

    The two parsers differed in three details before the flags were declared once; each keeps its own:
    ``--model``'s default (training: the original's string with its runs of spaces,
    :data:`monst3r.model_loading.ORIGINAL_TRAIN_MODEL_STRING`; evaluation: the same constructor with single spaces,
    :data:`monst3r.model_loading.OFFICIAL_MODEL_STRING`); ``--mode`` is restricted to :data:`MODES` in training
    (the stand-alone evaluation parser sets it itself); ``--flow_loss_fn`` is restricted to ``smooth_l1`` / ``mse``
    in evaluation only (training passes it on to the in-training pose evaluation unchecked, as the original).
    ``--translation_weight`` defaults to the original's ``1`` in both (the evaluation parser said ``1.0``; every
    reader casts it to float).
    """
    group = parser.add_argument_group("shared by training and evaluation (pose / depth)")
    for flag, kw in _SHARED:
        kw = dict(kw)
        if flag == "--model":
            kw["default"] = model_default
        elif flag == "--mode" and training:
            kw["choices"] = MODES
        elif flag == "--flow_loss_fn" and not training:
            kw["choices"] = ("smooth_l1", "mse")
        group.add_argument(flag, **kw)
    return group


def add_eval_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the evaluation flags the parser does not have yet (see module docstring); returns the parser.

    ``launch.py`` calls it after :func:`monst3r.training.args.get_args_parser` (which already declares the shared
    flags): only the additions are then new."""
    existing = set(parser._option_string_actions)  # noqa: SLF001 (argparse has no public query)
    if "--model" not in existing:
        add_shared_arguments(parser, model_default=DEFAULT_MODEL, training=False)
    group = parser.add_argument_group("evaluation (eval_pose / eval_depth)")
    for flag, kw in _EVAL_ONLY:
        if flag not in existing:
            group.add_argument(flag, **kw)
    return parser


def build_eval_parser(prog: Optional[str] = None, mode: Optional[str] = None) -> argparse.ArgumentParser:
    """Stand-alone parser with every evaluation flag (``--mode`` defaults to ``mode`` when given)."""
    from monst3r.utils.cli_errors import OneLineArgumentParser

    parser = OneLineArgumentParser(prog=prog, description="MonST3R evaluation (pose / depth)")
    add_eval_arguments(parser)
    if mode is not None:
        parser.set_defaults(mode=mode)
    return parser


def eval_defaults(argv: Sequence[str] = (), **overrides: Any) -> argparse.Namespace:
    """Parsed defaults (plus ``argv``), then ``overrides`` set as attributes: handy for library calls and tests."""
    args = build_eval_parser().parse_args(list(argv))
    for key, value in overrides.items():
        setattr(args, key, value)
    return args
