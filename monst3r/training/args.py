"""Command-line arguments of ``launch.py`` (training and evaluation flags; original names and defaults) and the
check of their values (:func:`check_launch_args`, shared by ``launch.py`` and ``python -m monst3r.eval.*``)."""
from __future__ import annotations

import argparse
import math
import os

import torch

from monst3r.errors import Monst3rInputError
from monst3r.eval.args import EVAL_DATASET_CHOICES, MODES, add_shared_arguments
from monst3r.model_loading import ORIGINAL_TRAIN_MODEL_STRING


#: The original's default ``--model`` string (with its runs of spaces from line continuations).
DEFAULT_MODEL = ORIGINAL_TRAIN_MODEL_STRING
DEFAULT_TRAIN_CRITERION = "ConfLoss(Regr3D(L21, norm_mode='avg_dis'), alpha=0.2)"
EVAL_DATASETS = list(EVAL_DATASET_CHOICES)


def get_args_parser() -> argparse.ArgumentParser:
    """The parser of ``launch.py`` (training flags, then the flags shared with evaluation declared once by
    :func:`monst3r.eval.args.add_shared_arguments`; original names and defaults).

    Built with ``add_help=False`` like the original; ``launch.py`` adds ``-h``. Flags beyond the original:
    ``--device``, ``--amp_dtype``, ``--pretrained_strict``, ``--stop_after_epochs``.
    """
    p = argparse.ArgumentParser("MonST3R training", add_help=False)
    # model and criteria
    p.add_argument("--pretrained_strict", default=1, type=int, choices=[0, 1],
                   help="1: every key of --pretrained must match the model; 0: partial init (logs missing keys)")
    p.add_argument("--train_criterion", default=DEFAULT_TRAIN_CRITERION, type=str, help="train criterion")
    p.add_argument("--test_criterion", default=None, type=str, help="test criterion (default: train criterion)")
    # datasets
    p.add_argument("--train_dataset", default="[None]", type=str, help="training dataset expression")
    p.add_argument("--test_dataset", default="[None]", type=str, help="test dataset expression ('+'-separated)")
    # training
    p.add_argument("--batch_size", default=64, type=int, help="pairs per process before symmetrisation")
    p.add_argument("--accum_iter", default=1, type=int, help="gradient accumulation steps")
    p.add_argument("--epochs", default=800, type=int, help="epochs to train")
    p.add_argument("--weight_decay", type=float, default=0.05, help="weight decay")
    p.add_argument("--lr", type=float, default=None, metavar="LR", help="absolute learning rate")
    p.add_argument("--blr", type=float, default=1.5e-4, metavar="LR",
                   help="base lr: lr = blr * batch_size * accum_iter * world_size / 256")
    p.add_argument("--min_lr", type=float, default=0.0, metavar="LR", help="floor of the cosine schedule")
    p.add_argument("--warmup_epochs", type=int, default=40, metavar="N", help="epochs of linear warm-up")
    p.add_argument("--amp", type=int, default=0, choices=[0, 1], help="mixed precision for the forward pass")
    p.add_argument("--amp_dtype", type=str, default="fp16", choices=["fp16", "bf16"],
                   help="autocast dtype with --amp 1 (fp16: the original's; bf16 needs no loss scaling)")
    p.add_argument("--eval_only", action="store_true", default=False, help="evaluate the test sets once and exit")
    p.add_argument("--fixed_eval_set", action="store_true", default=False, help="test sets always use epoch 0")
    p.add_argument("--resume", default=None, type=str, help="checkpoint to resume (default: auto-resume)")
    p.add_argument("--stop_after_epochs", default=None, type=int,
                   help="stop (as if interrupted) after training this many epochs in this run; resume later")
    # distributed / device
    p.add_argument("--num_workers", default=8, type=int, help="DataLoader workers")
    p.add_argument("--world_size", default=1, type=int, help="number of processes (set by torchrun)")
    p.add_argument("--local_rank", default=-1, type=int, help="unused (LOCAL_RANK is read from the environment)")
    p.add_argument("--dist_url", default="env://", help="url used to set up distributed training")
    # output
    p.add_argument("--eval_freq", type=int, default=1, help="test every N epochs")
    p.add_argument("--save_freq", default=1, type=int, help="write checkpoint-last.pth every N epochs")
    p.add_argument("--keep_freq", default=5, type=int, help="write checkpoint-<epoch>.pth every N epochs")
    p.add_argument("--print_freq", default=20, type=int, help="iterations between console lines")
    p.add_argument("--wandb", action="store_true", default=False, help="log to Weights & Biases")
    p.add_argument("--num_save_visual", default=1, type=int, help="GLB visualisations per epoch (0: none)")
    # evaluation (evaluation.md; shared with --mode=eval_pose / eval_depth)
    p.add_argument("--pose_eval_freq", default=0, type=int, help="pose evaluation every N epochs (0: never)")
    p.add_argument("--save_best_pose", action="store_true", default=False, help="save checkpoint-best_pose.pth")
    add_shared_arguments(p, model_default=DEFAULT_MODEL, training=True)
    return p


def check_launch_args(args: argparse.Namespace) -> None:
    """Refuse ``launch.py`` / ``python -m monst3r.eval.*`` values that can only be mistakes (the original crashed
    later with a traceback, or silently did nothing, e.g. ``--epochs -1``). Raises Monst3rInputError."""

    def need(ok: bool, msg: str) -> None:
        if not ok:
            raise Monst3rInputError(msg)

    for name in ("batch_size", "accum_iter", "epochs", "eval_freq", "save_freq", "keep_freq", "print_freq",
                 "n_iter", "pose_eval_stride", "world_size"):
        v = getattr(args, name, None)
        if v is not None:
            need(v >= 1, f"--{name} {v}: must be at least 1")
    for name in ("num_workers", "warmup_epochs", "pose_eval_freq", "num_save_visual"):
        v = getattr(args, name, None)
        if v is not None:
            need(v >= 0, f"--{name} {v}: must be 0 or more")
    for name in ("lr", "blr", "min_lr", "weight_decay", "flow_loss_weight", "temporal_smoothing_weight",
                 "translation_weight", "depth_regularize_weight", "motion_mask_thre", "flow_loss_thre",
                 "pxl_thresh", "flow_loss_start_epoch"):
        v = getattr(args, name, None)
        if v is not None:
            need(math.isfinite(v) and v >= 0, f"--{name} {v}: must be a finite number >= 0")
    for name in ("stop_after_epochs", "eval_max_seqs", "eval_image_size"):
        v = getattr(args, name, None)
        if v is not None:
            need(v >= 1, f"--{name} {v}: must be at least 1")
    device = getattr(args, "device", "auto") or "auto"
    if device != "auto":
        try:
            torch.device(device)
        except (RuntimeError, ValueError):
            raise Monst3rInputError(f"--device {device}: not a device; use auto, cpu, cuda, cuda:N or mps"
                                    ) from None
    if getattr(args, "mode", None) == "train":
        need(bool(args.train_dataset) and args.train_dataset.strip() not in ("[None]", "None"),
             "--mode=train needs --train_dataset, e.g. \"10_000 @ PointOdysseyDUSt3R(dset='train', "
             "dataset_location='data/point_odyssey', S=2, resolution=[(512, 288)])\" (see data/prepare_training.md)")
    for name in ("pretrained", "resume"):
        v = getattr(args, name, None)
        if v and not str(v).startswith("https://"):
            need(os.path.exists(v), f"--{name} {v}: no such file or folder")
    # the strings, parsed (nothing built) before the model is allocated and the datasets are read
    from monst3r.model_loading import check_model_config
    from monst3r.utils.parsing import parse_model_string

    if getattr(args, "model", None):
        check_model_config(parse_model_string(args.model)[1])
    if getattr(args, "mode", None) == "train":
        from monst3r.datasets.loader import check_dataset_expression
        from monst3r.training.criteria import CRITERIA, CRITERION_NAMES
        from monst3r.utils.parsing import check_expression

        check_dataset_expression(args.train_dataset)
        if args.test_dataset and args.test_dataset.strip() not in ("", "[None]", "None"):
            check_dataset_expression(args.test_dataset)
        for name in ("train_criterion", "test_criterion"):
            if getattr(args, name, None):
                check_expression(getattr(args, name), CRITERIA, CRITERION_NAMES, name.replace("_", " "))
