"""Fused, chunked autograd functions computing the two heavy loss terms of the optimizer, the pairwise
alignment sum (:func:`pair_align_sum`, optimizer.md 5.1) and the ego-flow versus optical-flow sum
(:func:`ego_flow_sum`, 5.3), in the channels-first layout ``[rows, 3, HW]``; plus the pose decoding
(:func:`quat_param_to_rotmat_fast`, :func:`signed_expm1_fn`).

Both terms are sums over many pairs of per-pixel costs whose inputs (pair predictions, optical flows) are
large and constant, while the variables they depend on are small (world points per image, one pose per pair).
The functions below therefore

* walk over the pairs in chunks of ``chunk`` rows, so that only one chunk's intermediates exist at a time
  (peak memory = stored inputs + a few chunk-sized buffers, whatever the number of pairs);
* compute the gradient with respect to every input *during the forward pass*, while the chunk's intermediates
  are at hand, and keep only gradient accumulators of the size of the variables (``[N, 3, HW]`` world-point
  gradient, a 3x3 matrix per pair, ...). The upstream gradient of each output is a scalar per output element,
  applied in ``backward`` (which is therefore a few multiplications, and nothing is recomputed);
* read the constant per-pair data in place (a row selection is gathered chunk by chunk), so that no per-pair
  copy of the predictions or flows is ever made.

Values and gradients equal those of the straightforward formulas up to float32 round-off (summation order);
tests/test_optimizer_kernels.py compares them with plain autograd and runs ``gradcheck`` in float64. The same
code runs on CPU and CUDA; only the default chunk size depends on the device (small chunks stay in the CPU
caches, large ones keep the GPU busy with few kernel launches).
"""
from __future__ import annotations

import torch

# pixels per chunk (rows = max(1, CHUNK_PIXELS // pixels per row))
CHUNK_PIXELS = {"cuda": 1 << 23, "cpu": 1 << 18}
_DEFAULT_CHUNK_PIXELS = 1 << 20


def default_chunk_rows(n_pixels: int, device: torch.device | str, chunk_size: int | None = None) -> int:
    """Rows (pairs) per chunk: ``chunk_size`` when given, else a device-dependent pixel budget / ``n_pixels``."""
    if chunk_size:
        return max(1, int(chunk_size))
    dev = torch.device(device).type
    return max(1, CHUNK_PIXELS.get(dev, _DEFAULT_CHUNK_PIXELS) // max(int(n_pixels), 1))


def _take(store: torch.Tensor, rows: torch.Tensor | None, a: int, b: int) -> torch.Tensor:
    """Rows ``a:b`` of the selection ``rows`` of ``store`` (a view when ``rows`` is None)."""
    return store[a:b] if rows is None else store.index_select(0, rows[a:b])


# ----------------------------------------------------------------------------------------------------------
# pairwise alignment (optimizer.md 5.1)
# ----------------------------------------------------------------------------------------------------------
class _PairAlignSum(torch.autograd.Function):
    """``sum_r sum_p w_r(p) dist(X[idx_r](p), M_r (a_r * P_r(p)) + t_r)`` for rows r (one view of one pair each).

    X ``[N, 3, HW]`` world points; M ``[R, 3, 3]``, t ``[R, 3]``: scaled pair pose of each row; adapt ``[R, 3]``
    per-axis scales or None; P ``[*, 3, HW]`` stored predictions with ``rows`` ``[R]`` selecting the rows used
    (None: the first R rows, in order); w ``[R, HW]`` weights, or a function ``w(a, b)`` returning the weights
    ``[b - a, HW]`` of rows a..b-1 (computed chunk by chunk, never stored); idx ``[R]`` image of each row.
    dist = Euclidean distance, or its square when ``squared``. The gradient of |D| at D = 0 is 0 (as torch's
    norm). Returns a scalar.
    """

    @staticmethod
    def forward(ctx, X, M, t, adapt, P, rows, w, idx, squared: bool, chunk: int, need_grad: bool):
        R = idx.shape[0]
        per_row = X.new_empty(R)
        need_X = need_grad and X.requires_grad
        need_M = need_grad and M.requires_grad
        need_t = need_grad and t.requires_grad
        need_a = need_grad and adapt is not None and adapt.requires_grad
        gX = torch.zeros_like(X) if need_X else None
        gM = X.new_empty(R, 3, 3) if need_M else None
        gt = X.new_empty(R, 3) if need_t else None
        ga = X.new_empty(R, 3) if need_a else None
        for a in range(0, R, chunk):
            b = min(a + chunk, R)
            Praw = _take(P, rows, a, b)
            Pc = Praw * adapt[a:b, :, None] if adapt is not None else Praw
            D = X.index_select(0, idx[a:b])
            D.sub_(torch.baddbmm(t[a:b, :, None], M[a:b], Pc))
            sq = (D * D).sum(dim=1)
            wc = w(a, b) if callable(w) else w[a:b]
            if squared:
                per_row[a:b] = (sq * wc).sum(dim=1)
                coef = 2 * wc
            else:
                n = sq.sqrt_()
                per_row[a:b] = (n * wc).sum(dim=1)
                coef = wc / n.clamp_min_(1e-30)  # D == 0 there, so the gradient D * coef is 0
            if not (need_X or need_M or need_t or need_a):
                continue
            G = D.mul_(coef[:, None, :])  # d out / d D  [c, 3, HW]
            if need_X:
                gX.index_add_(0, idx[a:b], G)
            if need_t:
                gt[a:b] = -G.sum(dim=2)
            if need_M:
                gM[a:b] = -torch.bmm(G, Pc.transpose(1, 2))
            if need_a:  # d out / d a_c = -sum_p Praw_c(p) (M^T G)_c(p) = -sum_i M_ic (G Praw^T)_ic
                ga[a:b] = -(M[a:b] * torch.bmm(G, Praw.transpose(1, 2))).sum(dim=1)
        ctx.save_for_backward(gX, gM, gt, ga)
        return per_row.sum()

    @staticmethod
    def backward(ctx, g):
        gX, gM, gt, ga = ctx.saved_tensors
        n = ctx.needs_input_grad
        return (gX * g if n[0] and gX is not None else None, gM * g if n[1] and gM is not None else None,
                gt * g if n[2] and gt is not None else None, ga * g if n[3] and ga is not None else None,
                None, None, None, None, None, None, None)


def pair_align_sum(X: torch.Tensor, M: torch.Tensor, t: torch.Tensor, P: torch.Tensor, w: torch.Tensor,
                   idx: torch.Tensor, rows: torch.Tensor | None = None, adapt: torch.Tensor | None = None,
                   squared: bool = False, chunk: int = 64) -> torch.Tensor:
    """Weighted alignment distance summed over rows and pixels; see :class:`_PairAlignSum`."""
    need = torch.is_grad_enabled() and any(v is not None and v.requires_grad for v in (X, M, t, adapt))
    return _PairAlignSum.apply(X, M, t, adapt, P, rows, w, idx, bool(squared), max(1, int(chunk)), need)


# ----------------------------------------------------------------------------------------------------------
# optical-flow term (optimizer.md 5.3)
# ----------------------------------------------------------------------------------------------------------
def _chunk_flow_loss(x: torch.Tensor, m: torch.Tensor, mse: bool, thre: float, bound: float, num_r: torch.Tensor,
                     cnt_r: torch.Tensor, a: int, b: int) -> torch.Tensor:
    """Loss of rows a..b-1 of :class:`_EgoFlowSum` from x = m (ego - obs) ``[c, 2, HW]`` and the mask m
    ``[c, 1, HW]``: writes numerators ``num_r[a:b]`` and counts ``cnt_r[a:b]`` and returns d num / d x (computed
    in place in x)."""
    if mse:
        num_r[a:b] = (x * x).sum(dim=(1, 2))
        cnt_r[a:b] = m.sum(dim=(1, 2)) * 2
        return x.mul_(2)
    ax = x.abs()
    cl = ax.clamp(max=1)
    l = (ax * cl).addcmul_(cl, cl, value=-0.5)  # 0.5 x^2 if |x| < 1 else |x| - 0.5
    # on the CPU, skip the per-element threshold when no element reaches it (then keep = m exactly)
    if thre > 0 and not (ax.device.type == "cpu" and float(ax.max()) < bound):
        del cl
        keep = (bound - ax).sign_().clamp_(min=0).mul_(m)
        del ax
        cnt_r[a:b] = keep.sum(dim=(1, 2))
        num_r[a:b] = l.mul_(keep).sum(dim=(1, 2))
        del l
        dl = x.clamp_(-1, 1).mul_(keep)
        del keep
    else:
        # x = 0 (so l = 0) on masked pixels: the mask needs no multiplication
        cnt_r[a:b] = m.sum(dim=(1, 2)) * (2 if thre > 0 else 1)
        num_r[a:b] = l.sum(dim=(1, 2))
        del ax, cl, l
        dl = x.clamp_(-1, 1)
    return dl


def _pool_groups(num_r: torch.Tensor, cnt_r: torch.Tensor, group_rows: tuple, per_row: str | None):
    """Per-row numerators / counts ``[D]`` -> per-group (numerator, count) ``[G]`` (see :class:`_EgoFlowSum`)."""
    G = len(group_rows)
    if per_row is None:
        num = torch.stack([num_r[r].sum() for r in group_rows]) if G else num_r.new_zeros(0)
    else:
        per = num_r / (cnt_r.clamp_min(1) if per_row == "guard" else cnt_r)
        num = torch.stack([per[r].sum() for r in group_rows]) if G else num_r.new_zeros(0)
    cnt = torch.stack([cnt_r[r].sum() for r in group_rows]) if G else cnt_r.new_zeros(0)
    return num, cnt


class _EgoFlowSum(torch.autograd.Function):
    """Masked smooth-L1 (or squared) error between ego-motion flow and optical flow, summed per group of
    directed pairs (rows).

    Inputs: Hm ``[D, 3, 3]`` = K_t R_t^T R_s K_s^-1; kt ``[D, 3]`` = K_t R_t^T (T_s - T_t); disp ``[n, HW]``
    disparity of the images (1 / (depth + 1e-6)) and src ``[D]`` the source image of each row; obs ``[*, 2, HW]``
    stored optical flows with ``obs_rows`` ``[D]`` (None: the first D rows in order); static ``[n, HW]`` float
    0/1 (static pixels of each image); valid ``[*, 1, HW]`` bool extra per-row mask with ``valid_rows`` (or
    None); Ph ``[3, HW]`` homogeneous pixel grid; group ``[D]`` group of each row, ``group_rows`` the row indices
    of each group (tuple of ``[D_g]``); per_row: None (pool per group: numerator and count summed), 'guard' or
    'raw' (sum over the group of numerator / count of each row, count clamped to >= 1 with 'guard').
    ego = (Hm p + disp kt)_xy / ((Hm p + disp kt)_z + 1e-6) - p, x = m (ego - obs) with m = static[src] (* valid).
    smooth-L1: l = 0.5 x^2 (|x| < 1) or |x| - 0.5, keep = (l < thre) & m, numerator = sum l keep, count =
    sum keep (thre <= 0: keep = m and count = number of mask pixels, as the original); mse: numerator =
    sum x^2, count = sum of m over both channels.
    Returns (numerator ``[G]``, count ``[G]``) per group; the count is not differentiable.
    Written without boolean temporaries (slow on CPU): l < thre  <=>  |x| < thre + 1/2 (thre >= 1/2) or
    |x| < sqrt(2 thre).
    """

    @staticmethod
    def forward(ctx, Hm, kt, disp, src, obs, obs_rows, static, valid, valid_rows, Ph, group, group_rows,
                per_row, thre: float, mse: bool, chunk: int, need_grad: bool):
        Dn = Hm.shape[0]
        G = len(group_rows)
        num_r = Hm.new_empty(Dn)
        cnt_r = Hm.new_empty(Dn)
        need_H = need_grad and Hm.requires_grad
        need_k = need_grad and kt.requires_grad
        need_d = need_grad and disp.requires_grad
        any_grad = need_H or need_k or need_d
        gH = Hm.new_empty(Dn, 3, 3) if need_H else None
        gk = Hm.new_empty(Dn, 3) if need_k else None
        n_img = disp.shape[0]
        gd = disp.new_zeros(G * n_img, disp.shape[1]) if need_d else None
        bound = thre + 0.5 if thre >= 0.5 else (2 * thre) ** 0.5
        Pxy = Ph[:2]
        for a in range(0, Dn, chunk):
            b = min(a + chunk, Dn)
            c = b - a
            src_c = src[a:b]
            disp_c = disp.index_select(0, src_c)
            q = torch.baddbmm((Hm[a:b].reshape(c * 3, 3) @ Ph).reshape(c, 3, -1), kt[a:b, :, None],
                              disp_c[:, None, :])
            inv_s = (q[:, 2:3] + 1e-6).reciprocal_()
            qn = q[:, :2] * inv_s  # = ego + p
            del q
            m = static.index_select(0, src_c)[:, None, :]
            if valid is not None:
                m = m * _take(valid, valid_rows, a, b).to(m.dtype)
            # x = m (ego - obs), written (when gradients are wanted) into the first two channels of the gradient
            # buffer gq, where it becomes d num / d q_xy in place (fewer chunk-sized temporaries)
            gq = qn.new_empty(c, 3, qn.shape[2]) if any_grad else None
            x = torch.sub(qn, Pxy, out=gq[:, :2]) if any_grad else qn - Pxy
            x.sub_(_take(obs, obs_rows, a, b)).mul_(m)
            dl = _chunk_flow_loss(x, m, mse, thre, bound, num_r, cnt_r, a, b)
            del m
            if not any_grad:
                continue
            # d (num_r * s_r) / d inputs, s_r = 1 (pooled) or 1 / count_r (per-row normalisation)
            if per_row is not None:
                cc = cnt_r[a:b]
                s = 1 / (cc.clamp_min(1) if per_row == "guard" else cc)
                dl = dl.mul_(s[:, None, None])
            gq_xy = dl.mul_(inv_s)  # = gq[:, :2]
            torch.sum(qn.mul_(gq_xy), dim=1, keepdim=True, out=gq[:, 2:3]).neg_()  # d num / d q_z
            del gq_xy, qn, dl, x, inv_s
            if need_H:
                gH[a:b] = (gq.reshape(c * 3, -1) @ Ph.T).reshape(c, 3, 3)
            if need_k:
                gk[a:b] = torch.bmm(gq, disp_c[:, :, None])[..., 0]
            if need_d:
                gdr = torch.bmm(kt[a:b, None, :], gq)[:, 0]  # [c, HW]
                gd.index_add_(0, group[a:b] * n_img + src_c if G > 1 else src_c, gdr)
        num, cnt = _pool_groups(num_r, cnt_r, group_rows, per_row)
        ctx.save_for_backward(gH, gk, gd, group)
        ctx.n_img = n_img
        ctx.mark_non_differentiable(cnt)
        return num, cnt

    @staticmethod
    def backward(ctx, g_num, g_cnt):
        gH, gk, gd, group = ctx.saved_tensors
        n = ctx.needs_input_grad
        out = [None] * 17
        if g_num is None:
            return tuple(out)
        g_row = g_num.index_select(0, group)  # [D] upstream gradient of each row
        if n[0] and gH is not None:
            out[0] = gH * g_row[:, None, None]
        if n[1] and gk is not None:
            out[1] = gk * g_row[:, None]
        if n[2] and gd is not None:
            out[2] = (gd.view(len(g_num), ctx.n_img, -1) * g_num[:, None, None]).sum(dim=0)
        return tuple(out)


def ego_flow_sum(Hm, kt, disp, src, obs, static, Ph, group=None, group_rows=None, obs_rows=None, valid=None,
                 valid_rows=None, per_row: str | None = None, thre: float = 50.0, mse: bool = False,
                 chunk: int = 64):
    """Per-group (numerator, count) of the flow loss; see :class:`_EgoFlowSum`. ``group`` None: one group."""
    if group is None:
        group = torch.zeros(Hm.shape[0], dtype=torch.long, device=Hm.device)
        group_rows = (torch.arange(Hm.shape[0], device=Hm.device),)
    if per_row not in (None, "guard", "raw"):
        raise ValueError(f"bad per_row {per_row!r}")
    need = torch.is_grad_enabled() and any(v.requires_grad for v in (Hm, kt, disp))
    return _EgoFlowSum.apply(Hm, kt, disp, src, obs, obs_rows, static, valid, valid_rows, Ph, group,
                             tuple(group_rows), per_row, float(thre), bool(mse), max(1, int(chunk)), need)


# ----------------------------------------------------------------------------------------------------------
# pose decoding
# ----------------------------------------------------------------------------------------------------------
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
