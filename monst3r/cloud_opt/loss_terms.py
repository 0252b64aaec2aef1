"""Loss terms of the global optimizer other than the pairwise alignment (optimizer.md 5.2-5.4): the masked flow
loss, the depth prior and the relative-pose (temporal) loss. Not the training losses (``monst3r/training/criteria.py``)."""
from __future__ import annotations

import torch


def smooth_l1_masked(est: torch.Tensor, obs: torch.Tensor, mask: torch.Tensor | None,
                     per_pixel_thre: float = 50.0, reduce_dims: tuple[int, ...] | None = None,
                     return_parts: bool = False, nan_guard: bool = True):
    """Masked, thresholded smooth-L1 (beta 1) pooled over all elements (optimizer.md 5.3 step 5).

    est, obs: ``[B, C, *S]``; mask: ``[B, 1, *S]`` bool (True = use), broadcast over C, or None.
    x = m (est - obs); l = 0.5 x^2 if |x| < 1 else |x| - 0.5; keep = (l < thre) & m per element;
    loss = sum(l keep) / sum(keep). With thre <= 0: no threshold, and the denominator is the number of mask
    pixels (not elements), as in the original.
    ``reduce_dims``: pool only over these dims (e.g. per edge) and return one value per remaining index.
    ``nan_guard``: an empty ``keep`` gives 0 instead of the original's NaN (bug 14.14; same value otherwise).
    ``return_parts``: return (numerator, count) instead of the ratio.
    """
    if mask is None:
        m = torch.ones_like(est, dtype=torch.bool)
    else:
        m = mask.expand_as(est)
    x = (est - obs) * m
    ax = x.abs()
    l = torch.where(ax < 1, 0.5 * x * x, ax - 0.5)
    if per_pixel_thre > 0:
        keepf = ((l < per_pixel_thre) & m).to(l.dtype)
        cntf = keepf
    else:
        # no threshold: the original divides by the number of mask *pixels* (the [B, 1, ...] mask is not
        # broadcast over the channels), i.e. twice the per-element mean for 2-channel flow. Kept as is.
        keepf = m.to(l.dtype)
        cntf = (torch.ones_like(est[:, :1], dtype=l.dtype) if mask is None else mask.to(l.dtype))
    if reduce_dims is None:
        num, cnt = (l * keepf).sum(), cntf.sum()
    else:
        num, cnt = (l * keepf).sum(dim=reduce_dims), cntf.sum(dim=reduce_dims)
    if return_parts:
        return num, cnt
    if nan_guard:
        return num / cnt.clamp_min(1)
    return num / cnt


def depth_regularization_si_weighted(depth_pred: torch.Tensor, depth_init: torch.Tensor,
                                     dynamic_mask: torch.Tensor | None = None, faithful: bool = False,
                                     reduction: str = "mean") -> torch.Tensor:
    """Scale-invariant log-depth prior towards the initial depth (optimizer.md 5.4).

    depth_pred, depth_init: ``[B, 1, H, W]`` (or ``[B, ...]``); dynamic_mask: same shape, True = dynamic.
    Per image: a = log(D), b = log(D0), s = mean(b - a), loss = mean(w (a - b + s)^2).
    Weights w: ``faithful`` reproduces the original (mask + 1: dynamic pixels weight 2, static 1; bug 14.5);
    otherwise dynamic pixels are ignored (w = 1 - mask), which is what the original's comments intend.
    reduction: 'mean' over images (batched mode) or 'sum' (the original's non-batched mode).
    """
    B = depth_pred.shape[0]
    a = torch.log(depth_pred.clamp_min(1e-6)).reshape(B, -1)
    b = torch.log(depth_init.clamp_min(1e-6)).reshape(B, -1)
    s = (b - a).mean(dim=1, keepdim=True)
    if dynamic_mask is None:
        w = torch.ones_like(a)
    else:
        m = dynamic_mask.reshape(B, -1).to(a.dtype)
        w = m + 1 if faithful else 1 - m
    per_img = (w * (a - b + s).square()).mean(dim=1)
    return per_img.mean() if reduction == "mean" else per_img.sum()


def relative_pose_loss(P1: torch.Tensor, P2: torch.Tensor, translation_weight: float = 0.1) -> torch.Tensor:
    """Per consecutive pair: |Rel_R - I|_F + w |Rel_t|_2 with Rel = inverse(P1) @ P2 (optimizer.md 5.2).

    P1, P2: ``[K, 4, 4]`` c2w. Returns ``[K]``; the temporal term is its sum.
    """
    rel = torch.linalg.inv(P1) @ P2
    eye = torch.eye(3, device=rel.device, dtype=rel.dtype)
    rot = torch.linalg.matrix_norm(rel[:, :3, :3] - eye)
    trans = torch.linalg.vector_norm(rel[:, :3, 3], dim=-1)
    return rot + translation_weight * trans
