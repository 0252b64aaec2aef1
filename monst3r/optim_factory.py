"""Optimiser pieces of the training loop (spec training.md 8.1-8.3): parameter groups, the per-iteration
learning-rate schedule (linear warm-up then half-cycle cosine) and the loss scaler.
"""
from __future__ import annotations

import logging
import math
from typing import Any, Dict, Iterable, List, Optional, Sequence

import torch

log = logging.getLogger(__name__)

__all__ = ["get_parameter_groups", "lr_at", "adjust_learning_rate", "adjust_learning_rate_by_lr", "LossScaler",
           "derive_lr", "build_optimizer"]


def get_parameter_groups(model: torch.nn.Module, weight_decay: float = 0.05, skip_list: Sequence[str] = (),
                         ) -> List[Dict[str, Any]]:
    """timm-style groups without layer decay: frozen parameters are skipped; 1-D tensors, ``*.bias`` and names in
    ``skip_list`` go to ``no_decay`` (weight decay 0), the rest to ``decay``. Each group is
    ``{'weight_decay', 'lr_scale': 1.0, 'params': [...], 'param_names': [...]}``; groups are ordered by the first
    appearance of one of their parameters in ``named_parameters()``."""
    groups: Dict[str, Dict[str, Any]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if param.ndim == 1 or name.endswith(".bias") or name in skip_list:
            key, wd = "no_decay", 0.0
        else:
            key, wd = "decay", weight_decay
        g = groups.setdefault(key, {"weight_decay": wd, "lr_scale": 1.0, "params": [], "param_names": []})
        g["params"].append(param)
        g["param_names"].append(name)
    return list(groups.values())


def lr_at(epoch_f: float, base_lr: float, min_lr: float, warmup_epochs: float, epochs: float) -> float:
    """Learning rate at fractional epoch ``epoch_f``: linear warm-up from 0, then half-cycle cosine to ``min_lr``."""
    if epoch_f < warmup_epochs:
        return base_lr * epoch_f / warmup_epochs
    return min_lr + (base_lr - min_lr) * 0.5 * (
        1.0 + math.cos(math.pi * (epoch_f - warmup_epochs) / (epochs - warmup_epochs)))


def adjust_learning_rate_by_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set ``lr * lr_scale`` (or ``lr`` when a group has no ``lr_scale``) on every group."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group["lr_scale"] if "lr_scale" in group else lr


def adjust_learning_rate(optimizer: torch.optim.Optimizer, epoch_f: float, args: Any) -> float:
    """Schedule of the original (``args.lr``, ``min_lr``, ``warmup_epochs``, ``epochs``); returns the lr set."""
    lr = lr_at(epoch_f, args.lr, args.min_lr, args.warmup_epochs, args.epochs)
    adjust_learning_rate_by_lr(optimizer, lr)
    return lr


def derive_lr(blr: float, batch_size: int, accum_iter: int, world_size: int) -> float:
    """Absolute lr from the base lr: ``blr * batch_size * accum_iter * world_size / 256``."""
    return blr * batch_size * accum_iter * world_size / 256


def build_optimizer(model: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW(betas=(0.9, 0.95)) over :func:`get_parameter_groups`."""
    groups = get_parameter_groups(model, weight_decay)
    if not groups:
        raise ValueError("the model has no trainable parameter (check --model's freeze setting)")
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95))


class LossScaler:
    """Backward + optimiser step with optional dynamic loss scaling (the original's
    ``NativeScalerWithGradNormCount``).

    The original always enables ``GradScaler`` (also in fp32). Here scaling is enabled only where it is useful:
    fp16 autocast on CUDA (``enabled=True``). When disabled, non-finite gradients are NOT silently skipped any
    more (the loop already stops on a non-finite loss). ``state_dict`` / ``load_state_dict`` are those of the
    underlying ``torch.amp.GradScaler`` (an empty dict when disabled), so checkpoints keep a ``scaler`` entry.
    """

    state_dict_key = "amp_scaler"

    def __init__(self, device_type: str = "cpu", enabled: bool = False):
        self.enabled = bool(enabled)
        self._scaler = torch.amp.GradScaler(device_type, enabled=self.enabled)

    def __call__(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer, clip_grad: Optional[float] = None,
                 parameters: Optional[Iterable[torch.nn.Parameter]] = None, create_graph: bool = False,
                 update_grad: bool = True) -> Optional[torch.Tensor]:
        """Backward of ``loss``; on ``update_grad``: unscale, (clip), step, update. Returns the grad norm."""
        self._scaler.scale(loss).backward(create_graph=create_graph)
        if not update_grad:
            return None
        self._scaler.unscale_(optimizer)
        params = [p for p in (parameters or []) if p.grad is not None]
        norm = None
        if params:
            if clip_grad is not None:
                norm = torch.nn.utils.clip_grad_norm_(params, clip_grad)
            else:
                norm = torch.norm(torch.stack([p.grad.detach().norm(2) for p in params]), 2)
        self._scaler.step(optimizer)
        self._scaler.update()
        return norm

    def state_dict(self) -> Dict[str, Any]:
        return self._scaler.state_dict()

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        if state:
            self._scaler.load_state_dict(state)
