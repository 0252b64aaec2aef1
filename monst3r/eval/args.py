"""Command-line arguments of the evaluation (``launch.py --mode=eval_pose | eval_depth``).

:func:`add_eval_arguments` adds every evaluation flag of the original (defaults exactly as there, evaluation spec
§1 / training spec §2) plus a few additions, skipping any flag the parser already has, so ``launch.py`` can call
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

__all__ = ["EVAL_DATASET_CHOICES", "DEFAULT_MODEL", "add_eval_arguments", "build_eval_parser", "eval_defaults"]

EVAL_DATASET_CHOICES = ("davis", "kitti", "bonn", "scannet", "tum", "nyu", "sintel")

#: The training parser's default ``--model`` (the MonST3R ViT-L / DPT network).
DEFAULT_MODEL = ("AsymmetricCroCo3DStereo(pos_embed='RoPE100', patch_embed_cls='ManyAR_PatchEmbed', "
                 "img_size=(512, 512), head_type='dpt', output_mode='pts3d', depth_mode=('exp', -inf, inf), "
                 "conf_mode=('exp', 1, inf), enc_embed_dim=1024, enc_depth=24, enc_num_heads=16, dec_embed_dim=768, "
                 "dec_depth=12, dec_num_heads=12, freeze='encoder')")


def _flag(name: str, **kw: Any) -> tuple[str, dict[str, Any]]:
    return name, kw


# (flag, argparse keyword arguments); order = help order
_ARGS: tuple[tuple[str, dict[str, Any]], ...] = (
    # shared with training (added only when the parser lacks them)
    _flag("--mode", type=str, default="train", help="train, eval_pose or eval_depth"),
    _flag("--model", type=str, default=DEFAULT_MODEL, help="network constructor string (parsed safely)"),
    _flag("--pretrained", type=str, default=None, help="checkpoint (.pth with 'model', model folder or hub id)"),
    _flag("--seed", type=int, default=0, help="random seed (per-sequence seeds derive from it)"),
    _flag("--cudnn_benchmark", action="store_true", default=False, help="set cudnn.benchmark"),
    # evaluation flags of the original
    _flag("--eval_dataset", type=str, default="sintel", choices=EVAL_DATASET_CHOICES, help="dataset to evaluate"),
    _flag("--output_dir", type=str, default="./results/tmp", help="folder of the per-sequence results"),
    _flag("--pose_eval_stride", type=int, default=1, help="frame stride of the pose evaluation"),
    _flag("--scene_graph_type", type=str, default="swinstride-5-noncyclic", help="pair graph"),
    _flag("--n_iter", type=int, default=300, help="global-alignment iterations"),
    _flag("--pose_schedule", type=str, default="linear", help="learning-rate schedule of the alignment"),
    _flag("--temporal_smoothing_weight", type=float, default=0.01),
    _flag("--translation_weight", type=float, default=1.0),
    _flag("--flow_loss_weight", type=float, default=0.01),
    _flag("--flow_loss_fn", type=str, default="smooth_l1", choices=("smooth_l1", "mse")),
    _flag("--flow_loss_start_epoch", type=float, default=0.1, help="fraction of n_iter before the flow loss"),
    _flag("--flow_loss_thre", type=float, default=20),
    _flag("--pxl_thresh", type=float, default=50.0),
    _flag("--motion_mask_thre", type=float, default=0.35),
    _flag("--depth_regularize_weight", type=float, default=0.0),
    _flag("--not_shared_focal", action="store_true", default=False, help="one focal per frame"),
    _flag("--use_gt_focal", action="store_true", default=False, help="Sintel: preset the GT focals (focal.txt)"),
    _flag("--use_gt_mask", action="store_true", default=False, help="use the GT dynamic masks, not self masks"),
    _flag("--sam2_mask_refine", action="store_true", default=False, help="refine the motion masks with SAM2"),
    _flag("--save_pose_qualitative", action="store_true", default=False, help="write <seq>.glb per sequence"),
    _flag("--silent", action="store_true", default=False, help="no progress bars"),
    _flag("--full_seq", action="store_true", default=False, help="every sub-folder is a sequence"),
    _flag("--seq_list", nargs="+", default=None, help="evaluate only these sequences"),
    _flag("--no_crop", action="store_true", default=False, help="resize instead of centre-crop (video depth)"),
    # additions
    _flag("--eval_data_root", type=str, default=".", help="folder holding data/ (default: working directory)"),
    _flag("--eval_image_size", type=int, default=512, help="long side of the loaded frames (original: 512)"),
    _flag("--device", type=str, default="auto", help="auto, cpu, cuda or cuda:N"),
    _flag("--eval_max_seqs", type=int, default=None, help="evaluate only the first K sequences"),
)


def add_eval_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the evaluation flags the parser does not have yet (see module docstring); returns the parser."""
    existing = set(parser._option_string_actions)  # noqa: SLF001 (argparse has no public query)
    group = parser.add_argument_group("evaluation (eval_pose / eval_depth)")
    for flag, kw in _ARGS:
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
