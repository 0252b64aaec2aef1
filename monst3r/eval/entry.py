"""What the evaluation entry points share beyond :mod:`monst3r.runtime`: the network from ``--model`` /
``--pretrained``, the report of failed sequences, the exit status and the ``python -m monst3r.eval.<x>`` entry.

``launch.py`` parses the arguments and calls ``monst3r.eval.pose.main(args)`` / ``monst3r.eval.depth.main(args)``
without setting anything up, so the entry points do it (evaluation spec §1): they turn ``args`` into their
settings (:mod:`monst3r.eval.config`) and set up the process group, devices and seeds from :mod:`monst3r.runtime`
and the network from :func:`build_eval_model`.
"""
from __future__ import annotations

import logging
import os

import torch

from monst3r.eval.config import EvalConfig

log = logging.getLogger(__name__)

__all__ = ["build_eval_model", "start_eval_run", "report_outcome", "exit_status", "run_cli"]


def build_eval_model(cfg: EvalConfig, device: torch.device) -> torch.nn.Module:
    """``cfg.model`` (``--model``, parsed safely) initialised from ``cfg.pretrained`` (``ckpt['model']``, a model
    folder or a ``.safetensors`` file; strict unless ``--pretrained_strict 0``); random weights, with a warning,
    without it.

    With ``--model`` left at its default and a full ``.pth`` checkpoint as ``--pretrained``, the network stored in
    the checkpoint is built (the compact model's differs from the default; for the official checkpoint both build
    the same network). Ours: the original always built ``--model`` and failed with a size mismatch otherwise."""
    from monst3r.model import load_model, model_from_string
    from monst3r.model_loading import OFFICIAL_MODEL_STRING

    if (cfg.pretrained and cfg.pretrained_strict and " ".join(str(cfg.model).split()) == OFFICIAL_MODEL_STRING
            and os.path.isfile(cfg.pretrained) and not str(cfg.pretrained).endswith(".safetensors")):
        log.info("--model left at its default: building the network stored in %s", cfg.pretrained)
        return load_model(cfg.pretrained, device="cpu", verbose=False, for_inference=True).to(device).eval()
    model = model_from_string(cfg.model, for_inference=True)
    if cfg.pretrained:
        from monst3r.training.checkpoints import load_pretrained

        load_pretrained(model, cfg.pretrained, strict=cfg.pretrained_strict)
    else:
        log.warning("no --pretrained checkpoint: evaluating a randomly initialised network")
    return model.to(device).eval()


def start_eval_run(cfg: EvalConfig, model: "torch.nn.Module | None" = None
                   ) -> "tuple[int, torch.device, torch.nn.Module]":
    """What an evaluation entry point does after ``init_distributed``: the device (``cfg.device``), the seed of this
    process (``cfg.seed`` + rank), ``cudnn.benchmark`` on CUDA, the output folder, and the network (built from
    ``cfg`` unless ``model`` is given, then moved to the device). Returns ``(rank, device, model)``."""
    from monst3r.runtime import rank_world, resolve_eval_device, seed_everything

    rank, _ = rank_world()
    device = resolve_eval_device(cfg.device)
    seed_everything(cfg.seed + rank)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = cfg.cudnn_benchmark
    os.makedirs(cfg.output_dir, exist_ok=True)
    model = build_eval_model(cfg, device) if model is None else model.to(device)
    return rank, device, model


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
    from monst3r.utils.cli_errors import error_exit

    args = build_eval_parser(prog, mode=mode).parse_args(argv)
    logging.basicConfig(level=logging.INFO if not args.silent else logging.WARNING, format="%(message)s")
    try:
        from monst3r.training.args import check_launch_args

        check_launch_args(args)
        result = main(args)
    except Monst3rInputError as exc:
        return error_exit(exc)
    return exit_status(sys.modules[main.__module__], result)
