#!/usr/bin/env python3
"""Entry point of training and evaluation (spec training.md 1).

    python launch.py --mode=train --train_dataset="..." --test_dataset="..." ...           (one process)
    torchrun --nproc_per_node=2 launch.py --mode=train ...                                (DDP; NCCL / Gloo)
    torchrun --nproc_per_node=1 launch.py --mode=eval_pose --eval_dataset=sintel ...      (evaluation)

``--mode=eval_pose`` / ``eval_depth`` run ``monst3r.eval.pose.main(args)`` / ``monst3r.eval.depth.main(args)``;
``--mode=train`` trains (:func:`monst3r.training.train`); any other mode is refused (the original trained).
Input mistakes are printed as one line (exit status 2).
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from typing import Optional, Sequence

os.environ.setdefault("OMP_NUM_THREADS", "4")  # as the original, unless the caller chose


def build_parser() -> argparse.ArgumentParser:
    from monst3r.training.args import get_args_parser

    from monst3r.utils.cli_errors import OneLineArgumentParser

    parser = OneLineArgumentParser("launch.py", parents=[get_args_parser()],
                                     description="MonST3R training (--mode=train) and evaluation (--mode=eval_pose, "
                                                 "--mode=eval_depth)")
    try:  # the evaluation's own additions (e.g. --eval_data_root), when the evaluation package is present
        from monst3r.eval.args import add_eval_arguments
    except ImportError:
        return parser
    return add_eval_arguments(parser)


def _setup_logging() -> None:
    rank = int(os.environ.get("RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    level = logging.INFO if rank == 0 or world > 8 else logging.WARNING
    fmt = "[%(asctime)s.%(msecs)03d] %(message)s" if world == 1 else f"[%(asctime)s.%(msecs)03d r{rank}] %(message)s"
    logging.basicConfig(level=level, format=fmt, datefmt="%H:%M:%S")


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging()
    from monst3r.errors import Monst3rInputError
    from monst3r.utils.cli_errors import error_exit

    try:
        from monst3r.training.args import check_launch_args

        check_launch_args(args)
        if args.mode.startswith("eval"):
            name = {"eval_pose": "monst3r.eval.pose", "eval_depth": "monst3r.eval.depth"}.get(args.mode)
            if name is None:
                return error_exit(f"unknown --mode {args.mode!r} (train, eval_pose, eval_depth)")
            try:
                module = importlib.import_module(name)
            except ModuleNotFoundError as exc:
                if exc.name and name.startswith(exc.name):
                    return error_exit(f"--mode={args.mode} is not available: {name} is not part of this build")
                raise
            result = module.main(args)
            if isinstance(result, int):
                return int(result)
            from monst3r.eval.entry import exit_status

            return exit_status(module, result)  # 1 with one error line when every sequence failed
        from monst3r.training import train

        train(args)
        return 0
    except Monst3rInputError as exc:
        return error_exit(exc)
    except FloatingPointError as exc:
        return error_exit(exc, 1)


if __name__ == "__main__":
    sys.exit(main())
