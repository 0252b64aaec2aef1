"""Process set-up shared by the evaluation entry points: distributed split, devices, seeds, the network.

``launch.py`` parses the arguments and calls ``monst3r.eval.pose.main(args)`` / ``monst3r.eval.depth.main(args)``
without setting anything up, so the entry points do it here, the way training does (evaluation spec §1):
torchrun environment -> process group (:func:`monst3r.training.init_distributed_mode`: NCCL on CUDA, Gloo
otherwise), ``seed + rank``, the network from ``--model`` / ``--pretrained``.
"""
from __future__ import annotations

import argparse
import logging
import math
import os
import random
from typing import Any, Sequence

import numpy as np
import torch

log = logging.getLogger(__name__)

__all__ = ["init_distributed", "finish_distributed", "rank_world", "barrier", "all_gather", "split_for_rank", "resolve_eval_device",
           "seed_everything", "unwrap", "build_eval_model"]


def init_distributed(args: argparse.Namespace) -> bool:
    """Create the process group from the torchrun environment (``RANK``, ``WORLD_SIZE``) unless one exists or the
    process was not started by torchrun. Returns True when this call created it (then the caller ends it with
    :func:`finish_distributed`)."""
    import torch.distributed as dist

    if (dist.is_available() and dist.is_initialized()) or "RANK" not in os.environ or \
            "WORLD_SIZE" not in os.environ:
        return False
    from monst3r.training import init_distributed_mode

    if not hasattr(args, "dist_url"):
        args.dist_url = "env://"
    if not hasattr(args, "device"):
        args.device = "auto"
    init_distributed_mode(args)
    return dist.is_initialized()


def finish_distributed(created: bool) -> None:
    """Barrier, then destroy the process group if :func:`init_distributed` created it."""
    import torch.distributed as dist

    if created and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def rank_world() -> tuple[int, int]:
    """``(rank, world size)``; ``(0, 1)`` without a process group."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_gather(obj: Any) -> list[Any]:
    """Every process's ``obj`` in rank order (``[obj]`` without a process group)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [obj]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def split_for_rank(items: Sequence[Any], rank: int, world: int) -> list[Any]:
    """Rank r takes ``items[r * per : (r + 1) * per]`` with ``per = ceil(n / world)`` (the original's split)."""
    per = math.ceil(len(items) / max(world, 1))
    return list(items[rank * per:min((rank + 1) * per, len(items))])


def resolve_eval_device(args: argparse.Namespace) -> torch.device:
    """``--device`` (auto: cuda when available); a bare ``cuda`` becomes the process's current GPU."""
    from monst3r.utils.device import resolve_device

    dev = resolve_device(getattr(args, "device", "auto") or "auto")
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    return dev


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2 ** 32)
    random.seed(seed)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The module inside a ``DistributedDataParallel`` wrapper (evaluation needs no gradient sync)."""
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


def build_eval_model(args: argparse.Namespace, device: torch.device) -> torch.nn.Module:
    """``--model`` (parsed safely) initialised from ``--pretrained`` (``ckpt['model']``, a model folder or a
    ``.safetensors`` file; strict unless ``--pretrained_strict 0``); random weights, with a warning, without it."""
    from monst3r.model import model_from_string

    model = model_from_string(args.model, for_inference=True)
    if getattr(args, "pretrained", None):
        from monst3r.training import load_pretrained

        load_pretrained(model, args.pretrained, strict=bool(getattr(args, "pretrained_strict", 1)))
    else:
        log.warning("no --pretrained checkpoint: evaluating a randomly initialised network")
    return model.to(device).eval()


def report_outcome(what: str, total: int, failed: "dict[str, str]", stream=None) -> int:
    """Tell the user about failed items of an evaluation run; returns the exit status.

    ``failed``: ``{name: reason}``. Nothing failed: silent, 0. Some failed: one ``warning: K of N <what> failed:
    names`` line on stderr, 0. All failed (or nothing to evaluate): one ``error: ...`` line, 1 (the original
    printed its averages over nothing and exited 0).
    """
    import sys

    stream = stream if stream is not None else sys.stderr
    if total > 0 and not failed:
        return 0
    shown = "; ".join(f"{k} ({' '.join(str(v).split())[:80]})" for k, v in list(failed.items())[:8])
    more = f" ... and {len(failed) - 8} more" if len(failed) > 8 else ""
    if total == 0 or len(failed) >= total:
        print(f"error: all {total} {what} failed: {shown}{more}" if total else f"error: no {what} to evaluate",
              file=stream, flush=True)
        return 1
    print(f"warning: {len(failed)} of {total} {what} failed: {shown}{more}", file=stream, flush=True)
    return 0


def exit_status(mode_module, result) -> int:
    """``mode_module.exit_status(result)`` when the evaluation module defines it, else 0."""
    fn = getattr(mode_module, "exit_status", None)
    return int(fn(result)) if fn is not None else 0


def run_cli(prog: str, mode: str, main, argv=None) -> int:
    """Shared ``python -m monst3r.eval.<x>`` entry: parse the eval flags, run ``main(args)``, print user errors as
    one line (exit code 2); exit code 1 when every sequence failed (see :func:`report_outcome`)."""
    import logging
    import sys

    from monst3r.errors import Monst3rInputError
    from monst3r.eval.args import build_eval_parser

    args = build_eval_parser(prog, mode=mode).parse_args(argv)
    logging.basicConfig(level=logging.INFO if not args.silent else logging.WARNING, format="%(message)s")
    try:
        from monst3r.training import check_launch_args

        check_launch_args(args)
        result = main(args)
    except Monst3rInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return exit_status(sys.modules[main.__module__], result)
