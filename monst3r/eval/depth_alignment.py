"""Scale-and-shift alignment of a depth (or disparity) prediction to the GT, as the original's
``depth_evaluation`` does it (used by :func:`monst3r.eval.metrics.depth_evaluation`).

Inputs are the valid pixels only: predictions ``p`` ``[V]`` and targets ``g`` ``[V]`` (torch, any float dtype;
arithmetic stays in that dtype, torch LOWER medians as the original).
"""
from __future__ import annotations

from typing import Optional, Union

import numpy as np
import torch

LAD2_EARLY_STOP = 1e-6


def lad2_fit(p: torch.Tensor, g: torch.Tensor, lr: float, max_iters: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The original's L1 scale-and-shift refinement: Adam on ``sum|s p + t - g|`` from the median scale.

    Deliberately reproduced as is: with lr 1e-4 and at most 1000 steps it moves s and t by at most ~0.1, so it
    is "median scale + a small L1 refinement", not a converged least-absolute-deviation fit. Parameters live
    in p's dtype; the loop stops after the step whose (pre-step) loss differs by < 1e-6 from the previous one.
    """
    s0 = torch.median(g) / torch.median(p)
    with torch.enable_grad():
        s = torch.tensor(s0.item(), dtype=p.dtype, device=p.device, requires_grad=True)
        t = torch.tensor(0.0, dtype=p.dtype, device=p.device, requires_grad=True)
        optimizer = torch.optim.Adam([s, t], lr=lr)
        prev = None
        for _ in range(max_iters):
            optimizer.zero_grad()
            loss = torch.sum(torch.abs(s * p + t - g))
            loss.backward()
            optimizer.step()
            value = loss.item()
            if prev is not None and abs(value - prev) < LAD2_EARLY_STOP:
                break
            prev = value
    return s.detach(), t.detach()


def lad_scipy_fit(p: torch.Tensor, g: torch.Tensor) -> tuple[float, float]:
    """SciPy BFGS on ``sum|s p + t - g|`` from ``(median(g)/median(p), 0)`` (original ``align_with_lad``)."""
    from scipy.optimize import minimize

    s0 = (torch.median(g) / torch.median(p)).item()
    pn, gn = p.cpu().numpy(), g.cpu().numpy()
    res = minimize(lambda x: np.sum(np.abs(x[0] * pn + x[1] - gn)), np.array([s0, 0.0]))
    return float(res.x[0]), float(res.x[1])


def clip(p: torch.Tensor, lo: Optional[float], hi: Optional[float]) -> torch.Tensor:
    """``p`` clamped below at ``lo`` and then above at ``hi`` (each skipped when None)."""
    if lo is not None:
        p = torch.clamp(p, min=lo)
    if hi is not None:
        p = torch.clamp(p, max=hi)
    return p


def fit_scale_shift(p: torch.Tensor, g: torch.Tensor, mode: str, lr: float, max_iters: int
                     ) -> tuple[Union[torch.Tensor, float], Union[torch.Tensor, float]]:
    """Scale and shift aligning the valid predictions ``p`` ``[V]`` to the targets ``g`` ``[V]`` (depth, or
    disparity with ``disp_input``) by ``mode``: 'lstsq' (least squares), 'lad' (SciPy BFGS L1), 'lad2' (Adam L1),
    'scale' (IRLS robust scale) or 'median' (median ratio). ``(1, 0)`` when there is no pixel; NaN scale when
    median(p) = 0 (e.g. an all-zero prediction: every scale-based fit is undefined)."""
    scale: Union[torch.Tensor, float] = 1.0
    shift: Union[torch.Tensor, float] = 0.0
    if p.numel() > 0 and mode != "lstsq" and not bool(torch.isfinite(torch.median(g) / torch.median(p))):
        scale = float("nan")
    elif p.numel() > 0:
        if mode == "lstsq":
            pn = p.cpu().numpy()
            a = np.stack([pn, np.ones_like(pn)], axis=-1)
            scale, shift = (float(v) for v in np.linalg.lstsq(a, g.cpu().numpy(), rcond=None)[0])
        elif mode == "lad":
            scale, shift = lad_scipy_fit(p, g)
        elif mode == "lad2":
            scale, shift = lad2_fit(p, g, lr, max_iters)
        elif mode == "scale":
            s = g.mean() / p.mean()
            for _ in range(10):
                w = 1 / (torch.abs(s * p - g) + 1e-8)
                s = torch.sum(w * p * g) / torch.sum(w * p ** 2)
            scale = torch.clamp(s, min=1e-3)
        else:
            scale = torch.median(g) / torch.median(p)
    return scale, shift
