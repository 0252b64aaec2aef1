"""Fused autograd functions for the two heavy loss terms (channels-first layout ``[B, 3, HW]``).

Writing the backward passes by hand removes most of the autograd graph (tens of small nodes per iteration)
and keeps only what the gradient needs; both functions are checked against autograd with ``gradcheck``
(tests/test_optimizer_kernels.py). They run unchanged on CPU and CUDA.
"""
from __future__ import annotations

import torch


class _PairAlignDist(torch.autograd.Function):
    """Per-pair weighted distances ``sum_p w(p) |X[idx](p) - (M P(p) + t)|`` (optimizer.md 5.1).

    X: ``[N, 3, HW]`` world points of the images; M: ``[E, 3, 3]`` (scaled pair rotation); t: ``[E, 3]``;
    P: ``[E, 3, HW]`` pair predictions (constant); w: ``[E, HW]`` weights (constant); idx: ``[E]`` image index of
    each pair; squared: squared distance ('l2') instead of the Euclidean one ('l1').
    Returns ``[E]``. The gradient of |D| at D = 0 is 0 (as torch's norm).
    """

    @staticmethod
    def forward(ctx, X, M, t, P, w, idx, squared: bool):
        D = X.index_select(0, idx)
        D.sub_(torch.baddbmm(t.unsqueeze(-1), M, P))
        sq = (D * D).sum(dim=1)
        if squared:
            out = (sq * w).sum(dim=1)
            coef = 2 * w
        else:
            n = sq.sqrt_()
            out = (n * w).sum(dim=1)
            coef = w / n.clamp_min_(1e-30)  # D == 0 there, so the gradient D * coef is 0
        ctx.save_for_backward(D, coef, P, idx)
        ctx.n_imgs = X.shape[0]
        return out

    @staticmethod
    def backward(ctx, g):
        D, coef, P, idx = ctx.saved_tensors
        G = D * (coef * g[:, None])[:, None, :]  # dLoss/dD  [E, 3, HW]
        gX = gM = gt = None
        if ctx.needs_input_grad[0]:
            gX = torch.zeros((ctx.n_imgs,) + tuple(G.shape[1:]), device=G.device, dtype=G.dtype)
            gX.index_add_(0, idx, G)
        if ctx.needs_input_grad[1]:
            gM = -torch.bmm(G, P.transpose(1, 2))
        if ctx.needs_input_grad[2]:
            gt = -G.sum(dim=2)
        return gX, gM, gt, None, None, None, None


def pair_align_dist(X: torch.Tensor, M: torch.Tensor, t: torch.Tensor, P: torch.Tensor, w: torch.Tensor,
                    idx: torch.Tensor, squared: bool = False) -> torch.Tensor:
    """See :class:`_PairAlignDist`. Returns the per-pair weighted distance sums ``[E]``."""
    return _PairAlignDist.apply(X, M, t, P, w, idx, squared)


class _EgoFlowLoss(torch.autograd.Function):
    """Masked smooth-L1 (or squared) error between ego-motion flow and optical flow, per directed pair.

    Inputs: Hm ``[D, 3, 3]`` = K_t R_t^T R_s K_s^-1; kt ``[D, 3]`` = K_t R_t^T (T_s - T_t); disp ``[D, HW]``
    (1 / (depth_s + 1e-6)); obs ``[D, 2, HW]`` optical flow; mask ``[D, 1, HW]`` float 0/1 (static pixels);
    Ph ``[3, HW]`` homogeneous pixel grid; thre: per-element threshold of the smooth-L1 (<= 0: none);
    mse: squared error instead (no threshold).
    ego = (Hm p + disp kt)_xy / ((Hm p + disp kt)_z + 1e-6) - p. Returns (numerator ``[D]``, count ``[D]``):
    smooth-L1: x = m (ego - obs), l = 0.5 x^2 (|x| < 1) or |x| - 0.5, keep = (l < thre) & m,
    numerator = sum l keep, count = sum keep (with thre <= 0: keep = m and count = number of mask pixels,
    as the original); mse: numerator = sum (m (ego - obs))^2, count = sum of m over both channels.
    Written without boolean temporaries (slow on CPU): l < thre  <=>  |x| < thre + 1/2 (thre >= 1/2) or
    |x| < sqrt(2 thre).
    """

    @staticmethod
    def forward(ctx, Hm, kt, disp, obs, mask, Ph, thre: float, mse: bool):
        Dn = Hm.shape[0]
        q = torch.baddbmm((Hm.reshape(Dn * 3, 3) @ Ph).reshape(Dn, 3, -1), kt[:, :, None], disp[:, None, :])
        inv_s = (q[:, 2:3] + 1e-6).reciprocal_()
        qn = q[:, :2] * inv_s  # = ego + p
        m = mask.to(qn.dtype)
        x = (qn - Ph[:2]).sub_(obs).mul_(m)
        if mse:
            num = (x * x).sum(dim=(1, 2))
            cnt = m.sum(dim=(1, 2)) * 2
            dl = 2 * x
        else:
            ax = x.abs()
            c = ax.clamp(max=1)
            l = torch.addcmul(ax * c, c, c, value=-0.5)  # 0.5 x^2 if |x| < 1 else |x| - 0.5
            bound = thre + 0.5 if thre >= 0.5 else (2 * thre) ** 0.5
            # on the CPU, skip the per-element threshold when no element reaches it (then keep = m exactly)
            if thre > 0 and not (ax.device.type == "cpu" and float(ax.max()) < bound):
                keep = (bound - ax).sign_().clamp_(min=0).mul_(m)
                cnt = keep.sum(dim=(1, 2))
                num = (l * keep).sum(dim=(1, 2))
                dl = x.clamp_(-1, 1).mul_(keep)
            else:
                # x = 0 (so l = 0) on masked pixels: the mask needs no multiplication
                cnt = m.sum(dim=(1, 2)) * (2 if thre > 0 else 1)
                num = l.sum(dim=(1, 2))
                dl = x.clamp_(-1, 1)
        ctx.save_for_backward(qn, inv_s, dl, disp, kt, Ph)
        ctx.mark_non_differentiable(cnt)
        return num, cnt

    @staticmethod
    def backward(ctx, g_num, g_cnt):
        qn, inv_s, dl, disp, kt, Ph = ctx.saved_tensors
        ge = dl * g_num[:, None, None]  # d num / d ego (mask inside dl)
        gq_xy = ge * inv_s
        gq_z = -(gq_xy * qn).sum(dim=1, keepdim=True)
        gq = torch.cat((gq_xy, gq_z), dim=1)  # [D, 3, HW]
        Dn = gq.shape[0]
        gH = gk = gd = None
        if ctx.needs_input_grad[0]:
            gH = (gq.reshape(Dn * 3, -1) @ Ph.T).reshape(Dn, 3, 3)
        if ctx.needs_input_grad[1]:
            gk = torch.bmm(gq, disp[:, :, None])[..., 0]
        if ctx.needs_input_grad[2]:
            gd = torch.bmm(kt[:, None, :], gq)[:, 0]
        return gH, gk, gd, None, None, None, None, None


def ego_flow_loss(Hm, kt, disp, obs, mask, Ph, thre: float = 50.0, mse: bool = False):
    """See :class:`_EgoFlowLoss`. Returns (numerator ``[D]``, count ``[D]``)."""
    return _EgoFlowLoss.apply(Hm, kt, disp, obs, mask, Ph, float(thre), bool(mse))


class _SignedExpm1(torch.autograd.Function):
    """sign(x) (exp|x| - 1) with derivative exp|x|; ``faithful``: derivative 0 at x == 0 exactly, as the
    original's composition of torch ops (sign'(0) = abs'(0) = 0)."""

    @staticmethod
    def forward(ctx, x, faithful: bool):
        ax = x.abs()
        e = torch.expm1(ax)
        ctx.save_for_backward(x, e)
        ctx.faithful = faithful
        return torch.sign(x) * e

    @staticmethod
    def backward(ctx, g):
        x, e = ctx.saved_tensors
        d = e + 1
        if ctx.faithful:
            d = d * (x != 0).to(d.dtype)
        return g * d, None


def signed_expm1_fn(x: torch.Tensor, faithful: bool = False) -> torch.Tensor:
    """Fused :func:`monst3r.utils.geometry.signed_expm1` (faithful) / ``signed_expm1_smooth``."""
    return _SignedExpm1.apply(x, faithful)


_QUAT_TO_ROT = None


def _quat_to_rot_matrix(device, dtype) -> torch.Tensor:
    """Constant ``[16, 9]`` map from the outer product q q^T (XYZW) to the rotation matrix entries."""
    C = torch.zeros(4, 4, 3, 3, dtype=torch.float64)
    x, y, z, w = 0, 1, 2, 3
    # diagonal: homogeneous form (as roma/scipy): x2 - y2 - z2 + w2, ...
    for (a, s) in ((x, 1), (y, -1), (z, -1), (w, 1)):
        C[a, a, 0, 0] = s
    for (a, s) in ((x, -1), (y, 1), (z, -1), (w, 1)):
        C[a, a, 1, 1] = s
    for (a, s) in ((x, -1), (y, -1), (z, 1), (w, 1)):
        C[a, a, 2, 2] = s
    # off-diagonal: 2 (xy - zw) etc.; each product appears twice in q q^T (symmetric) -> coefficient 1 each
    def put(i, j, a, b, s):
        C[a, b, i, j] += s
        C[b, a, i, j] += s
    put(0, 1, x, y, 1), put(0, 1, z, w, -1)
    put(0, 2, x, z, 1), put(0, 2, y, w, 1)
    put(1, 0, x, y, 1), put(1, 0, z, w, 1)
    put(1, 2, y, z, 1), put(1, 2, x, w, -1)
    put(2, 0, x, z, 1), put(2, 0, y, w, -1)
    put(2, 1, y, z, 1), put(2, 1, x, w, 1)
    return C.reshape(16, 9).to(device=device, dtype=dtype)


def quat_param_to_rotmat_fast(q: torch.Tensor) -> torch.Tensor:
    """Rotation matrices ``[B, 3, 3]`` of unnormalised XYZW quaternions ``[B, 4]`` with few autograd nodes
    (normalise, outer product, one matmul with a constant map)."""
    global _QUAT_TO_ROT
    qn = torch.nn.functional.normalize(q, dim=-1)
    if _QUAT_TO_ROT is None or _QUAT_TO_ROT.device != q.device or _QUAT_TO_ROT.dtype != q.dtype:
        _QUAT_TO_ROT = _quat_to_rot_matrix(q.device, q.dtype)
    outer = (qn[:, :, None] * qn[:, None, :]).reshape(-1, 16)
    return (outer @ _QUAT_TO_ROT).reshape(-1, 3, 3)
