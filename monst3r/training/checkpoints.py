"""Training checkpoints (spec training.md 11): reading (``weights_only``), atomic writing of
``checkpoint-<tag>.pth`` / ``checkpoint-final.pth``, resuming and ``--pretrained`` initialisation.

Keys: ``model``, ``optimizer``, ``scaler``, ``args`` (an ``argparse.Namespace`` of plain values), ``epoch`` (last
COMPLETED epoch), ``best_so_far``, ``best_pose_ate_sofar``; ``checkpoint-final.pth`` holds ``args``, ``model``,
``epoch`` = ``args.epochs`` and ``best_so_far``. Written by rank 0 only (temporary file + ``os.replace``). All load
with ``torch.load(weights_only=True)`` once ``argparse.Namespace`` is allow-listed (as
:func:`monst3r.model.load_model` does).
"""
from __future__ import annotations

import argparse
import logging
import math
import os
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import torch

from monst3r.model_loading import CheckpointError, check_state_dict
from monst3r.optim_factory import LossScaler
from monst3r.runtime import is_main_process
from monst3r.utils.files import sniff_file_kind

log = logging.getLogger(__name__)


def read_checkpoint(path: str) -> Dict[str, Any]:
    """``torch.load(weights_only=True)`` with ``argparse.Namespace`` allow-listed (URLs: hub download with hash
    check). Errors are :class:`CheckpointError` with a one-line reason."""
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            if str(path).startswith("https://"):
                return torch.hub.load_state_dict_from_url(str(path), map_location="cpu", check_hash=True,
                                                          weights_only=True)
            if not os.path.isfile(path):
                raise CheckpointError(f"checkpoint not found: {path}")
            kind = sniff_file_kind(path)
            if kind is not None:
                raise CheckpointError(f"{path} is not a MonST3R checkpoint: it is {kind}; give a .pth written by "
                                      "training or the official checkpoint")
            return torch.load(path, map_location="cpu", weights_only=True)
    except CheckpointError:
        raise
    except Exception as exc:  # noqa: BLE001 - unpickling / zip / IO errors all mean an unusable file
        first = str(exc).splitlines()[0][:200] if str(exc) else ""
        raise CheckpointError(f"cannot read checkpoint {path} ({type(exc).__name__}{': ' + first if first else ''}): "
                              "truncated, not a PyTorch checkpoint, or holding objects other than plain weights "
                              "(never executed)") from None


def _atomic_save(obj: Dict[str, Any], path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _plain_args(args: argparse.Namespace) -> argparse.Namespace:
    """A copy of ``args`` holding only values ``weights_only`` loading accepts (others become strings)."""
    def plain(v: Any) -> Any:
        if v is None or isinstance(v, (bool, int, float, str)):
            return v
        if isinstance(v, (list, tuple)):
            return type(v)(plain(x) for x in v)
        if isinstance(v, dict):
            return {str(k): plain(x) for k, x in v.items()}
        return str(v)
    return argparse.Namespace(**{k: plain(v) for k, v in vars(args).items()})


def save_checkpoint(output_dir: str, tag: str, args: argparse.Namespace, epoch: int, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer, loss_scaler: LossScaler, best_so_far: float,
                    best_pose_ate_sofar: float = math.inf) -> Optional[Path]:
    """Write ``<output_dir>/checkpoint-<tag>.pth`` (rank 0 only; atomic). ``epoch`` = last completed epoch."""
    if not is_main_process():
        return None
    path = Path(output_dir) / f"checkpoint-{tag}.pth"
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "epoch": int(epoch),
        "args": _plain_args(args),
        "scaler": loss_scaler.state_dict(),
        "best_so_far": float(best_so_far),
        "best_pose_ate_sofar": float(best_pose_ate_sofar),
    }
    _atomic_save(state, path)
    log.info("saved %s (epoch %d)", path, epoch)
    return path


def save_final_model(output_dir: str, args: argparse.Namespace, model: torch.nn.Module,
                     best_so_far: float) -> Optional[Path]:
    """``checkpoint-final.pth``: ``args``, CPU ``model``, ``epoch = args.epochs``, ``best_so_far``."""
    if not is_main_process():
        return None
    path = Path(output_dir) / "checkpoint-final.pth"
    sd = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    _atomic_save({"args": _plain_args(args), "model": sd, "epoch": int(args.epochs),
                  "best_so_far": float(best_so_far)}, path)
    log.info("saved %s", path)
    return path


def load_training_state(path: str, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                        loss_scaler: LossScaler) -> Tuple[int, float, float]:
    """Resume from ``path``: model (strict), optimizer, scaler. Returns ``(start_epoch, best_so_far,
    best_pose_ate_sofar)`` with ``start_epoch = ckpt['epoch'] + 1``."""
    ckpt = read_checkpoint(path)
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise CheckpointError(f"{path} is not a training checkpoint (no 'model' entry)")
    model.load_state_dict(check_state_dict(ckpt["model"], Path(path)), strict=True)
    log.info("resume checkpoint %s", path)
    start_epoch = 0
    if "optimizer" in ckpt and "epoch" in ckpt:
        try:
            optimizer.load_state_dict(ckpt["optimizer"])
            start_epoch = int(ckpt["epoch"]) + 1
            if ckpt.get("scaler"):
                loss_scaler.load_state_dict(ckpt["scaler"])
        except (ValueError, KeyError, TypeError, RuntimeError) as exc:
            raise CheckpointError(f"--resume {path}: its optimizer state does not fit this model/optimizer "
                                  f"({type(exc).__name__}: {str(exc)[:160]}); resume with the same --model, or "
                                  "start from it with --pretrained instead") from None
        log.info("with optimizer state; resuming at epoch %d", start_epoch)
    best = float(ckpt.get("best_so_far", math.inf) if ckpt.get("best_so_far") is not None else math.inf)
    best_pose = float(ckpt.get("best_pose_ate_sofar", math.inf)
                      if ckpt.get("best_pose_ate_sofar") is not None else math.inf)
    return start_epoch, best, best_pose


def load_pretrained(model: torch.nn.Module, path: str, strict: bool = True) -> None:
    """Initialise ``model`` from a DUSt3R/MonST3R ``.pth`` (``ckpt['model']`` or a bare state dict) or a Hugging
    Face folder / ``.safetensors`` file. The model's own ``load_state_dict`` fills ``dec_blocks2`` from
    ``dec_blocks`` when absent and accepts the DPT alias names; shape mismatches are always errors."""
    p = Path(path)
    if p.is_dir() or p.suffix == ".safetensors":
        from safetensors.torch import load_file

        f = p / "model.safetensors" if p.is_dir() else p
        if not f.is_file():
            raise CheckpointError(f"--pretrained {path}: no model.safetensors found")
        try:
            sd = load_file(str(f))
        except Exception as exc:  # noqa: BLE001 - SafetensorError / OSError: an unusable file
            raise CheckpointError(f"--pretrained {f} is not a MonST3R checkpoint: cannot read it as safetensors "
                                  f"({str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__})") from None
    else:
        ckpt = read_checkpoint(str(p))
        sd = ckpt["model"] if isinstance(ckpt, dict) and "model" in ckpt else ckpt
    sd = check_state_dict(sd, p)
    res = model.load_state_dict(sd, strict=strict)
    if not strict:
        log.warning("pretrained %s: missing keys %s; unexpected keys %s", path, list(res.missing_keys)[:20],
                    list(res.unexpected_keys)[:20])
    log.info("initialised the model from %s", path)
