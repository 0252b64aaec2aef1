"""Training and test criteria (spec training.md 9).

Every criterion is called as ``criterion(gt1, gt2, pred1, pred2) -> (loss scalar tensor, details dict[str, float])``
where ``gt*`` are (symmetrised) view dicts with ``camera_pose [B,4,4]`` (camera-to-world), ``pts3d [B,H,W,3]``
(world frame) and ``valid_mask [B,H,W]``; ``pred1 = {'pts3d' [B,H,W,3], 'conf' [B,H,W]}`` and
``pred2 = {'pts3d_in_other_view' [B,H,W,3], 'conf' [B,H,W]}``, both in camera 1's frame.

Criterion strings (``ConfLoss(Regr3D(L21, norm_mode='avg_dis'), alpha=0.2)``) are parsed safely by
:func:`monst3r.utils.parsing.parse_criterion` against :data:`CRITERIA`.
"""
from __future__ import annotations

import copy
import logging
from typing import Any, Dict, Optional, Tuple

import torch
from torch import nn

from monst3r.training.loss_geometry import (geotrf, inv, joint_center_and_scale, joint_depth_median,
                                          normalize_pointcloud)

log = logging.getLogger(__name__)

__all__ = ["BaseCriterion", "LLoss", "L21Loss", "L21", "Criterion", "MultiLoss", "Regr3D", "ConfLoss",
           "Regr3D_ShiftInv", "Regr3D_ScaleInv", "Regr3D_ScaleShiftInv", "CRITERIA"]

Details = Dict[str, float]


# ---------------------------------------------------------------------------------------------- pixel losses
class BaseCriterion(nn.Module):
    """A point-wise criterion with a ``reduction`` ('mean' | 'sum' | 'none')."""

    def __init__(self, reduction: str = "mean"):
        super().__init__()
        self.reduction = reduction


class LLoss(BaseCriterion):
    """Distance-based loss between point sets ``a, b [N, D]`` (D in 1..3)."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if a.shape != b.shape or not (a.ndim >= 2 and 1 <= a.shape[-1] <= 3):
            raise ValueError(f"bad shapes {tuple(a.shape)} vs {tuple(b.shape)}")
        dist = self.distance(a, b)
        if self.reduction == "none":
            return dist
        if self.reduction == "sum":
            return dist.sum()
        if self.reduction == "mean":
            return dist.mean() if dist.numel() > 0 else dist.new_zeros(())
        raise ValueError(f"bad reduction mode {self.reduction!r}")

    def distance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class L21Loss(LLoss):
    """Euclidean distance ``||a - b||_2`` over the last dimension -> ``[N]``."""

    def distance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.norm(a - b, dim=-1)


#: The instance the criterion strings refer to by the bare name ``L21``.
L21 = L21Loss()


# ---------------------------------------------------------------------------------------------- composition
class Criterion(nn.Module):
    """A loss built on a pixel criterion (``self.criterion``, an :class:`LLoss`)."""

    def __init__(self, criterion: Optional[BaseCriterion] = None):
        super().__init__()
        if not isinstance(criterion, BaseCriterion):
            raise TypeError(f"{criterion!r} is not a pixel criterion such as L21")
        self.criterion = copy.deepcopy(criterion)

    def get_name(self) -> str:
        return f"{type(self).__name__}({self.criterion})"

    def with_reduction(self, mode: str = "none") -> "Criterion":
        """Deep copy with ``reduction = mode`` on every pixel criterion of the chain."""
        res = loss = copy.deepcopy(self)
        while loss is not None:
            if not isinstance(loss, Criterion):
                raise TypeError(f"{loss!r} does not support with_reduction")
            loss.criterion.reduction = mode
            loss = loss._loss2
        return res


def _shallow_copy(m: nn.Module) -> nn.Module:
    """``copy.copy`` with its own submodule table (so registering ``_loss2`` on the copy leaves ``m`` alone)."""
    res = copy.copy(m)
    res.__dict__["_modules"] = dict(m._modules)
    return res


class MultiLoss(nn.Module):
    """Arithmetic of losses: ``0.5 * A`` scales, ``A + B`` chains; details of all terms are merged.

    Subclasses implement ``compute_loss(*args) -> scalar`` or ``(scalar, details)``, and ``get_name()``.
    """

    def __init__(self) -> None:
        super().__init__()
        self._alpha: float = 1
        self._loss2: Optional[MultiLoss] = None

    def compute_loss(self, *args: Any, **kwargs: Any):
        raise NotImplementedError

    def get_name(self) -> str:
        raise NotImplementedError

    def __mul__(self, alpha: float) -> "MultiLoss":
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)):
            return NotImplemented
        res = _shallow_copy(self)
        res._alpha = alpha
        return res

    __rmul__ = __mul__

    def __add__(self, loss2: "MultiLoss") -> "MultiLoss":
        if not isinstance(loss2, MultiLoss):
            return NotImplemented
        res = cur = _shallow_copy(self)
        while cur._loss2 is not None:
            cur._loss2 = _shallow_copy(cur._loss2)
            cur = cur._loss2
        cur._loss2 = loss2
        return res

    def __repr__(self) -> str:
        name = self.get_name()
        if self._alpha != 1:
            name = f"{self._alpha:g}*{name}"
        if self._loss2 is not None:
            name = f"{name} + {self._loss2}"
        return name

    def forward(self, *args: Any, **kwargs: Any) -> Tuple[torch.Tensor, Details]:
        loss = self.compute_loss(*args, **kwargs)
        if isinstance(loss, tuple):
            loss, details = loss
        elif loss.ndim == 0:
            details = {self.get_name(): float(loss.detach())}
        else:
            details = {}
        loss = loss * self._alpha
        if self._loss2 is not None:
            loss2, details2 = self._loss2(*args, **kwargs)
            loss = loss + loss2
            details = {**details, **details2}
        return loss, details


# ---------------------------------------------------------------------------------------------- regression
class Regr3D(Criterion, MultiLoss):
    """3D regression of both point maps in camera 1's frame (spec 9.3).

    GT: ``inv(gt1.camera_pose) @ gt{1,2}.pts3d``. Prediction: ``pred1.pts3d``, ``pred2.pts3d_in_other_view``.
    With ``norm_mode`` the prediction pair is normalised (and the GT pair too unless ``gt_scale``).
    Returns ``l1 + l2`` (or ``((l1, mask1), (l2, mask2))`` with reduction 'none') and
    ``{'<Class>_pts3d_1': mean(l1), '<Class>_pts3d_2': mean(l2)}``.
    """

    def __init__(self, criterion: BaseCriterion, norm_mode: Optional[str] = "avg_dis", gt_scale: bool = False):
        super().__init__(criterion)
        self.norm_mode = norm_mode
        self.gt_scale = gt_scale

    def get_all_pts3d(self, gt1: Dict, gt2: Dict, pred1: Dict, pred2: Dict):
        """-> ``(gt_pts1, gt_pts2, pr_pts1, pr_pts2 [B,H,W,3], valid1, valid2 [B,H,W], monitoring dict)``."""
        in_camera1 = inv(gt1["camera_pose"])
        gt_pts1 = geotrf(in_camera1, gt1["pts3d"])
        gt_pts2 = geotrf(in_camera1, gt2["pts3d"])
        valid1 = gt1["valid_mask"].clone().bool()
        valid2 = gt2["valid_mask"].clone().bool()
        pr_pts1 = pred1["pts3d"]
        pr_pts2 = pred2["pts3d_in_other_view"]
        if self.norm_mode:
            pr_pts1, pr_pts2 = normalize_pointcloud(pr_pts1, pr_pts2, self.norm_mode, valid1, valid2)
        if self.norm_mode and not self.gt_scale:
            gt_pts1, gt_pts2 = normalize_pointcloud(gt_pts1, gt_pts2, self.norm_mode, valid1, valid2)
        return gt_pts1, gt_pts2, pr_pts1, pr_pts2, valid1, valid2, {}

    def compute_loss(self, gt1: Dict, gt2: Dict, pred1: Dict, pred2: Dict, **kw: Any):
        gt_pts1, gt_pts2, pr_pts1, pr_pts2, mask1, mask2, monitoring = self.get_all_pts3d(gt1, gt2, pred1, pred2, **kw)
        l1 = self.criterion(pr_pts1[mask1], gt_pts1[mask1])
        l2 = self.criterion(pr_pts2[mask2], gt_pts2[mask2])
        name = type(self).__name__
        details = {f"{name}_pts3d_1": float(l1.detach().mean()), f"{name}_pts3d_2": float(l2.detach().mean())}
        if self.criterion.reduction == "none":
            return ((l1, mask1), (l2, mask2)), {**details, **monitoring}
        return l1 + l2, {**details, **monitoring}


class ConfLoss(MultiLoss):
    """Confidence-weighted pixel loss (spec 9.4): per view ``mean(l * c - alpha * log c)`` over valid pixels.

    Details: ``conf_loss_1``, ``conf_loss2`` (the original's inconsistent keys) plus the pixel loss's details.
    """

    def __init__(self, pixel_loss: Criterion, alpha: float = 1):
        super().__init__()
        if not alpha > 0:
            raise ValueError(f"ConfLoss alpha must be > 0, got {alpha}")
        self.alpha = alpha
        self.pixel_loss = pixel_loss.with_reduction("none")

    def get_name(self) -> str:
        return f"ConfLoss({self.pixel_loss})"

    @staticmethod
    def get_conf_log(x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        return x, torch.log(x)

    def compute_loss(self, gt1: Dict, gt2: Dict, pred1: Dict, pred2: Dict, **kw: Any):
        ((loss1, msk1), (loss2, msk2)), details = self.pixel_loss(gt1, gt2, pred1, pred2, **kw)
        terms = []
        for k, (loss, msk, pred) in enumerate(((loss1, msk1, pred1), (loss2, msk2, pred2)), start=1):
            if loss.numel() == 0:
                log.warning("NO VALID POINTS in img%d", k)
                terms.append(loss.new_zeros(()))
                continue
            conf, log_conf = self.get_conf_log(pred["conf"][msk])
            terms.append((loss * conf - self.alpha * log_conf).mean())
        c1, c2 = terms
        return c1 + c2, dict(conf_loss_1=float(c1.detach()), conf_loss2=float(c2.detach()), **details)


class Regr3D_ShiftInv(Regr3D):
    """Regr3D, then the z shift of each pair is removed (per-item lower median z over the valid points)."""

    def get_all_pts3d(self, gt1, gt2, pred1, pred2):
        gt_pts1, gt_pts2, pr_pts1, pr_pts2, m1, m2, monitoring = super().get_all_pts3d(gt1, gt2, pred1, pred2)
        gt_z = joint_depth_median(gt_pts1, gt_pts2, m1, m2).reshape(-1, 1, 1, 1)
        pr_z = joint_depth_median(pr_pts1, pr_pts2, m1, m2).reshape(-1, 1, 1, 1)

        def shift(p, z):  # new tensor: network outputs are never edited in place
            return torch.cat((p[..., :2], p[..., 2:] - z), dim=-1)

        return (shift(gt_pts1, gt_z), shift(gt_pts2, gt_z), shift(pr_pts1, pr_z), shift(pr_pts2, pr_z), m1, m2,
                monitoring)


class Regr3D_ScaleInv(Regr3D):
    """Regr3D, then scale-normalised: scale = lower median distance to the per-coordinate median centre;
    with ``gt_scale`` the prediction is brought to the GT scale, else both are divided by their scale."""

    def get_all_pts3d(self, gt1, gt2, pred1, pred2):
        gt_pts1, gt_pts2, pr_pts1, pr_pts2, m1, m2, monitoring = super().get_all_pts3d(gt1, gt2, pred1, pred2)
        _, gt_scale = joint_center_and_scale(gt_pts1, gt_pts2, m1, m2)
        _, pr_scale = joint_center_and_scale(pr_pts1, pr_pts2, m1, m2)
        gt_scale = gt_scale.reshape(-1, 1, 1, 1)
        pr_scale = pr_scale.clip(min=1e-3, max=1e3).reshape(-1, 1, 1, 1)
        if self.gt_scale:
            pr_pts1 = pr_pts1 * gt_scale / pr_scale
            pr_pts2 = pr_pts2 * gt_scale / pr_scale
        else:
            gt_pts1, gt_pts2 = gt_pts1 / gt_scale, gt_pts2 / gt_scale
            pr_pts1, pr_pts2 = pr_pts1 / pr_scale, pr_pts2 / pr_scale
        return gt_pts1, gt_pts2, pr_pts1, pr_pts2, m1, m2, monitoring


class Regr3D_ScaleShiftInv(Regr3D_ScaleInv, Regr3D_ShiftInv):
    """Base Regr3D point maps, then the shift step, then the scale step (MRO order; spec 9.5)."""


#: Names usable in a criterion string (calls) and the bare objects (``L21``).
CRITERIA = {
    "L21Loss": L21Loss, "Regr3D": Regr3D, "ConfLoss": ConfLoss, "Regr3D_ShiftInv": Regr3D_ShiftInv,
    "Regr3D_ScaleInv": Regr3D_ScaleInv, "Regr3D_ScaleShiftInv": Regr3D_ScaleShiftInv,
}
CRITERION_NAMES = {"L21": L21}
