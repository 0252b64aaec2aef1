"""The memory-saving loss path (chunked kernels with gradients computed in the forward pass, pair data read in
place, compact flow storage, vectorised clean-up) against the straightforward computation with plain autograd.

Small sizes; the same code runs at the demo size (bench/bench_optimizer.py reports its memory)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from monst3r.cloud_opt import global_aligner
from monst3r.cloud_opt.align_flow_kernels import default_chunk_rows, ego_flow_sum, pair_align_sum
from monst3r.cloud_opt.loss_terms import smooth_l1_masked
from monst3r.cloud_opt.self_masks import ego_flow
from monst3r.cloud_opt.clean_confidences import clean_confidences_loop, clean_confidences
from monst3r.datasets.synthetic import SyntheticScene


pytestmark = pytest.mark.usefixtures("one_thread")


def _close(a, b, rtol=1e-5, what=""):
    a, b = torch.as_tensor(a).detach().double(), torch.as_tensor(b).detach().double()
    tol = rtol * float(b.abs().max()) + 1e-12
    assert float((a - b).abs().max()) <= tol, (what, float((a - b).abs().max()), tol)


# ------------------------------------------------------------------------------------------------------------
# kernels against plain autograd
# ------------------------------------------------------------------------------------------------------------
def _align_inputs(dtype=torch.float32, N=4, R=10, HW=37, seed=0, store_rows=14):
    g = torch.Generator().manual_seed(seed)
    X = (torch.randn(N, 3, HW, generator=g, dtype=dtype) + 3).requires_grad_()
    M = (torch.eye(3, dtype=dtype) + 0.1 * torch.randn(R, 3, 3, generator=g, dtype=dtype)).requires_grad_()
    t = (0.1 * torch.randn(R, 3, generator=g, dtype=dtype)).requires_grad_()
    a = (1 + 0.1 * torch.randn(R, 3, generator=g, dtype=dtype)).requires_grad_()
    P = torch.randn(store_rows, 3, HW, generator=g, dtype=dtype) + 3
    rows = torch.randperm(store_rows, generator=g)[:R]
    w = torch.rand(R, HW, generator=g, dtype=dtype)
    idx = torch.randint(0, N, (R,), generator=g)
    return X, M, t, a, P, rows, w, idx


def _align_reference(X, M, t, a, P, rows, w, idx, squared):
    Pc = P[rows] * a[:, :, None] if a is not None else P[rows]
    D = X[idx] - (M @ Pc + t[:, :, None])
    sq = (D * D).sum(dim=1)
    return ((sq if squared else sq.sqrt()) * w).sum()


@pytest.mark.parametrize("squared", [False, True])
@pytest.mark.parametrize("chunk", [1, 3, 100])
@pytest.mark.parametrize("with_adapt", [False, True])
def test_pair_align_sum_matches_autograd(squared, chunk, with_adapt):
    X, M, t, a, P, rows, w, idx = _align_inputs()
    a = a if with_adapt else None
    leaves = [v for v in (X, M, t, a) if v is not None]
    ref = _align_reference(X, M, t, a, P, rows, w, idx, squared)
    g_ref = torch.autograd.grad(ref, leaves)
    out = pair_align_sum(X, M, t, P, w, idx, rows=rows, adapt=a, squared=squared, chunk=chunk)
    g_out = torch.autograd.grad(2.5 * out, leaves)  # a non-unit upstream gradient
    _close(out, ref, 1e-6, "loss")
    for name, go, gr in zip("XMta", g_out, g_ref):
        _close(go, 2.5 * gr, 1e-5, name)


def test_pair_align_sum_rows_none_reads_the_first_rows_and_no_grad_skips_gradients():
    X, M, t, a, P, rows, w, idx = _align_inputs()
    ref = _align_reference(X, M, t, None, P, torch.arange(len(idx)), w, idx, False)
    with torch.no_grad():
        out = pair_align_sum(X, M, t, P, w, idx, chunk=4)
    assert not out.requires_grad
    _close(out, ref, 1e-6)


def test_pair_align_sum_gradcheck():
    X, M, t, a, P, rows, w, idx = _align_inputs(torch.float64, N=3, R=5, HW=6, store_rows=7)
    for squared in (False, True):
        f = lambda X, M, t, a: pair_align_sum(X, M, t, P, w, idx, rows=rows, adapt=a, squared=squared, chunk=2)  # noqa
        assert torch.autograd.gradcheck(f, (X, M, t, a))


def _flow_inputs(dtype=torch.float32, n=4, D=9, H=5, W=7, seed=0, big=False, store_rows=12):
    g = torch.Generator().manual_seed(seed)
    HW = H * W
    Hm = (torch.eye(3, dtype=dtype) + 0.02 * torch.randn(D, 3, 3, generator=g, dtype=dtype)).requires_grad_()
    kt = (0.05 * torch.randn(D, 3, generator=g, dtype=dtype)).requires_grad_()
    depth = (2 + torch.rand(n, HW, generator=g, dtype=dtype)).requires_grad_()
    src = torch.randint(0, n, (D,), generator=g)
    scale = 40.0 if big else 0.5  # big: many residuals beyond the smooth-L1 threshold
    obs = scale * torch.randn(store_rows, 2, HW, generator=g, dtype=dtype)
    obs_rows = torch.randperm(store_rows, generator=g)[:D]
    static = (torch.rand(n, HW, generator=g) > 0.2).to(dtype)
    valid = torch.rand(store_rows, 1, HW, generator=g) > 0.1
    v, u = torch.meshgrid(torch.arange(H, dtype=dtype), torch.arange(W, dtype=dtype), indexing="ij")
    Ph = torch.stack((u.reshape(-1), v.reshape(-1), torch.ones(HW, dtype=dtype)))
    group = torch.randint(0, 2, (D,), generator=g)
    return Hm, kt, depth, src, obs, obs_rows, static, valid, Ph, group


def _flow_reference(Hm, kt, depth, src, obs, obs_rows, static, valid, Ph, group, per_row, thre, mse, use_valid):
    """The straightforward formula: ego flow of every row, masked smooth-L1 / MSE per row, pooled per group."""
    disp = 1 / (depth[src] + 1e-6)
    q = Hm @ Ph + disp[:, None, :] * kt[:, :, None]
    ego = q[:, :2] / (q[:, 2:3] + 1e-6) - Ph[:2]
    m = static[src][:, None, :].bool()
    if use_valid:
        m = m & valid[obs_rows]
    o = obs[obs_rows]
    if mse:
        x = (ego - o) * m
        num, cnt = (x * x).sum(dim=(1, 2)), m.expand_as(x).sum(dim=(1, 2)).to(x.dtype)
    else:
        num, cnt = smooth_l1_masked(ego, o, m, per_pixel_thre=thre, reduce_dims=(1, 2), return_parts=True)
    nums, cnts = [], []
    for k in range(2):
        sel = group == k
        if per_row is None:
            nums.append(num[sel].sum())
        else:
            c = cnt[sel].clamp_min(1) if per_row == "guard" else cnt[sel]
            nums.append((num[sel] / c).sum())
        cnts.append(cnt[sel].sum())
    return torch.stack(nums), torch.stack(cnts)


@pytest.mark.parametrize("mode", ["sl1", "sl1_big", "sl1_nothre", "mse"])
@pytest.mark.parametrize("per_row", [None, "guard"])
@pytest.mark.parametrize("use_valid", [False, True])
@pytest.mark.parametrize("chunk", [1, 4, 100])
def test_ego_flow_sum_matches_autograd(mode, per_row, use_valid, chunk):
    Hm, kt, depth, src, obs, obs_rows, static, valid, Ph, group = _flow_inputs(big=mode == "sl1_big")
    thre = 0.0 if mode == "sl1_nothre" else 50.0
    mse = mode == "mse"
    leaves = (Hm, kt, depth)
    num_r, cnt_r = _flow_reference(Hm, kt, depth, src, obs, obs_rows, static, valid, Ph, group, per_row, thre, mse,
                                   use_valid)
    coef = torch.tensor([0.7, -1.3])
    g_ref = torch.autograd.grad((num_r * coef).sum(), leaves)
    group_rows = tuple(torch.nonzero(group == k).ravel() for k in range(2))
    disp = 1 / (depth + 1e-6)
    num, cnt = ego_flow_sum(Hm, kt, disp, src, obs, static, Ph, group=group, group_rows=group_rows,
                            obs_rows=obs_rows, valid=valid if use_valid else None, valid_rows=obs_rows,
                            per_row=per_row, thre=thre, mse=mse, chunk=chunk)
    assert not cnt.requires_grad
    _close(num, num_r, 1e-5, "num")
    _close(cnt, cnt_r, 0, "cnt")
    g_out = torch.autograd.grad((num * coef).sum(), leaves)
    for name, go, gr in zip(("Hm", "kt", "depth"), g_out, g_ref):
        _close(go, gr, 2e-5, name)


def test_ego_flow_sum_threshold_branch_is_exercised():
    """With large residuals some elements exceed the per-pixel threshold (the keep mask is then computed)."""
    Hm, kt, depth, src, obs, obs_rows, static, valid, Ph, group = _flow_inputs(big=True)
    num, cnt = ego_flow_sum(Hm, kt, 1 / (depth + 1e-6), src, obs, static, Ph, obs_rows=obs_rows, thre=50.0)
    masked = static[src].sum() * 2
    assert 0 < float(cnt[0]) < float(masked)


def test_ego_flow_sum_gradcheck():
    Hm, kt, depth, src, obs, obs_rows, static, valid, Ph, group = _flow_inputs(torch.float64, D=5, H=3, W=4)
    group_rows = tuple(torch.nonzero(group == k).ravel() for k in range(2))
    for per_row, mse in ((None, False), ("guard", False), (None, True)):
        def f(Hm, kt, depth):
            return ego_flow_sum(Hm, kt, 1 / (depth + 1e-6), src, obs, static, Ph, group=group,
                                group_rows=group_rows, obs_rows=obs_rows, per_row=per_row, thre=50.0, mse=mse,
                                chunk=2)[0]
        assert torch.autograd.gradcheck(f, (Hm, kt, depth))


def test_default_chunk_rows():
    assert default_chunk_rows(288 * 512, "cpu") == 1
    assert default_chunk_rows(288 * 512, "cuda") == (1 << 23) // (288 * 512)
    assert default_chunk_rows(10, "cpu", chunk_size=7) == 7


# ------------------------------------------------------------------------------------------------------------
# whole scene: optimizer forward/backward against the spec's formulas written with plain autograd
# ------------------------------------------------------------------------------------------------------------
DEMO = dict(shared_focal=True, temporal_smoothing_weight=0.01, translation_weight=1.0, flow_loss_weight=0.01,
            flow_loss_start_epoch=0.1, flow_loss_thre=1e9, use_self_mask=True, sam2_mask_refine=False,
            verbose=False)
PARAMS = ("pw_poses", "im_depthmaps", "im_poses", "im_focals", "pw_adaptors")


@pytest.fixture(scope="module")
def scene():
    torch.set_num_threads(1)
    n, W, H = 6, 64, 48
    sc = SyntheticScene(width=W, height=H, num_frames=n, seed=3, num_objects=1)
    fw = [(i, i + k) for i in range(n) for k in (1, 2) if i + k < n]
    pairs = fw + [(j, i) for i, j in fw]
    out = sc.ideal_inference(pairs, noise_std=0.02, scale=None)
    fij = torch.tensor(np.stack([sc.flow(i, j)[0] for i, j in pairs])).permute(0, 3, 1, 2)
    fji = torch.tensor(np.stack([sc.flow(j, i)[0] for i, j in pairs])).permute(0, 3, 1, 2)
    return out, (fij, fji)


def _reference_loss(net, epoch):
    """optimizer.md 5.1-5.3 (batched formulas) from the public getters, plain torch ops."""
    pw = net.get_pw_poses()
    adapt = net.get_adaptors()
    pts = net.get_pts3d(raw=True)  # [N, HW, 3]
    E = net.n_edges
    li, lj = 0, 0
    for e, (i, j) in enumerate(net.edges):
        for view, img, acc in ((0, i, "i"), (1, j, "j")):
            P = net._pred_t[e + view * E].T * adapt[e]  # [HW, 3]
            A = P @ pw[e, :3, :3].T + pw[e, :3, 3]
            w = torch.log(net._stacked_conf[e + view * E])
            d = (torch.linalg.vector_norm(pts[img] - A, dim=-1) * w).sum()
            if acc == "i":
                li = li + d
            else:
                lj = lj + d
    loss = li / net.total_area_i + lj / net.total_area_j
    c2w = net.get_im_poses()
    if net.temporal_smoothing_weight > 0:
        rel = torch.linalg.inv(c2w[:-1]) @ c2w[1:]
        eye = torch.eye(3)
        temporal = (torch.linalg.matrix_norm(rel[:, :3, :3] - eye)
                    + net.translation_weight * torch.linalg.vector_norm(rel[:, :3, 3], dim=-1)).sum()
        loss = loss + net.temporal_smoothing_weight * temporal
    if net.flow_loss_weight > 0 and epoch >= net.num_total_iter * net.flow_loss_start_epoch:
        H, W = net.imshapes[0]
        K = net.get_intrinsics()
        Kinv = torch.linalg.inv(K)
        R, T = c2w[:, :3, :3], c2w[:, :3, 3]
        disp = 1 / (torch.stack(net.get_depthmaps())[:, None] + 1e-6)
        ei, ej = net._ei, net._ej
        ego_ij = ego_flow(R[ei], T[ei], R[ej], T[ej], disp[ei], K[ej], Kinv[ei])
        ego_ji = ego_flow(R[ej], T[ej], R[ei], T[ei], disp[ej], K[ei], Kinv[ej])
        static = ~torch.stack(net.dynamic_masks)[:, None]
        flow = (smooth_l1_masked(ego_ij, net.flow_ij, static[ei], net.pxl_thre)
                + smooth_l1_masked(ego_ji, net.flow_ji, static[ej], net.pxl_thre))
        loss = loss + net.flow_loss_weight * flow
    return loss


@pytest.mark.parametrize("kw", [dict(), dict(chunk_size=1), dict(chunk_size=4, batchify=False),
                                dict(allow_pw_adaptors=True, chunk_size=3)],
                         ids=["default", "chunk1", "nonbatched", "adaptors"])
def test_scene_loss_and_gradients_match_straightforward_formulas(scene, kw):
    out, flows = scene
    net = global_aligner(out, device="cpu", flows=flows, **DEMO, **kw)
    net.initialize("mst")
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # a generic point (at the init the distance gradients are round-off)
        for p in PARAMS:
            if getattr(net, p).requires_grad:  # (adaptors are ignored unless allow_pw_adaptors)
                getattr(net, p).add_(0.01 * torch.randn(getattr(net, p).shape, generator=g))
    params = [getattr(net, p) for p in PARAMS if getattr(net, p).requires_grad]
    for epoch in (0, 300):  # flow term off / on
        net.zero_grad()
        loss, _ = net.loss_and_backward(epoch)
        grads = [p.grad.clone() for p in params]
        ref = _reference_loss(net, epoch)
        g_ref = torch.autograd.grad(ref, params)
        assert float(loss) == pytest.approx(float(ref.detach()), rel=1e-5)
        for name, a, b in zip([p for p in PARAMS if getattr(net, p).requires_grad], grads, g_ref):
            assert float(b.abs().max()) > 0, name
            _close(a, b, 2e-4, name)


def test_flows_are_stored_once_when_consistent(scene):
    out, (fij, fji) = scene
    net = global_aligner(out, device="cpu", flows=(fij, fji), **DEMO)
    assert net._flow_ji is None and net._flow_obs.data_ptr() == net.flow_ij.data_ptr()
    torch.testing.assert_close(net.flow_ji, fji, rtol=0, atol=0)
    # inconsistent flows: both directions stored (as views of one store), same loss formula
    bad = fji.clone()
    bad[0] += 1
    net2 = global_aligner(out, device="cpu", flows=(fij, bad), **DEMO)
    assert net2._flow_ji is not None
    torch.testing.assert_close(net2.flow_ji, bad, rtol=0, atol=0)
    torch.testing.assert_close(net2.flow_ij, fij, rtol=0, atol=0)


def test_clean_confidences_matches_the_double_loop():
    g = torch.Generator().manual_seed(0)
    N, H, W = 7, 12, 16
    K = torch.tensor([[14., 0, 8], [0, 14, 6], [0, 0, 1]]).expand(N, 3, 3).clone()
    c2w = torch.eye(4).repeat(N, 1, 1)
    c2w[:, 0, 3] = torch.linspace(0, 0.6, N)
    c2w[:, 2, 3] = torch.linspace(0, 0.2, N)
    depth = [2 + 0.5 * torch.rand(H, W, generator=g) for _ in range(N)]
    conf = [1 + 5 * torch.rand(H, W, generator=g) for _ in range(N)]
    ref = clean_confidences_loop(conf, K, c2w, depth, 0.001, 0.0)
    for chunk in (H * W, 3 * H * W, 1 << 22):
        res = clean_confidences(conf, K, c2w, depth, chunk_pixels=chunk)
        assert sum(int((r == 0).sum()) for r in ref) > 0
        for a, b in zip(res, ref):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
