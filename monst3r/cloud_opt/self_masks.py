"""Ego-motion flow and dynamic (motion) masks from optical flow, vectorised over all pairs (optimizer.md 5.3, 7.1).

The original builds one two-image ``PairViewer`` per unordered pair in a Python loop on the CPU (over an hour
for 94 frames, its issue #44). Here every step that can be batched runs for all pairs at once on the given
device: pair confidences, Weiszfeld focals, depths, ego flows, error maps, min-max normalisation, the per-frame
mean and the threshold. Only the RANSAC PnP (one per pair, the camera that is not the pair's reference) stays
in OpenCV on the CPU, run in a thread pool.
"""
from __future__ import annotations

import logging
import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch

from monst3r.cloud_opt.init_im_poses import estimate_focal_knowing_depth, fast_pnp, pnp_many
from monst3r.utils.geometry import intrinsics_from_focal_pp, inv_intrinsics, rigid_inverse, xy_grid

log = logging.getLogger(__name__)


def ego_flow(R_src: torch.Tensor, T_src: torch.Tensor, R_tgt: torch.Tensor, T_tgt: torch.Tensor,
             disp_src: torch.Tensor, K_tgt: torch.Tensor, inv_K_src: torch.Tensor,
             return_coords: bool = False):
    """Flow induced by camera motion on a static scene (the original's ``DepthBasedWarping``).

    R_*: ``[B, 3, 3]``, T_*: ``[B, 3]`` or ``[B, 3, 1]`` (c2w of the source / target camera);
    disp_src: ``[B, 1, H, W]`` (= 1 / (depth + 1e-6)); K_tgt, inv_K_src: ``[B, 3, 3]``.
    q = K_t R_t^T R_s K_s^-1 p + disp(p) K_t R_t^T (T_s - T_t); q /= (q_z + 1e-6); flow = q - p.
    Returns ``[B, 2, H, W]`` (``return_coords``: also the full ``[B, 3, H, W]`` difference and normalised q
    ``[B, 3, H*W]``, as the original returns them).
    """
    B, _, H, W = disp_src.shape
    dev, dt = disp_src.device, disp_src.dtype
    P = xy_grid(W, H, device=dev, dtype=dt, homogeneous=True).reshape(-1, 3).T  # [3, HW]
    Rt = R_tgt.transpose(1, 2)
    Rrel = Rt @ R_src
    trel = Rt @ (T_src.reshape(B, 3, 1) - T_tgt.reshape(B, 3, 1))
    Hm = K_tgt @ Rrel @ inv_K_src
    q = Hm @ P + disp_src.reshape(B, 1, -1) * (K_tgt @ trel)
    q = q / (q[:, 2:3] + 1e-6)
    if return_coords:
        diff = (q - P).reshape(B, 3, H, W)
        return diff[:, :2], diff, q
    return (q[:, :2] - P[:2]).reshape(B, 2, H, W)


@dataclass
class PairGeometry:
    """Two-view geometry of P pairs as the original ``PairViewer`` computes it (optimizer.md 10.1).

    Index 0 = image a (view 1 of the forward edge), 1 = image b. Shapes: focals ``[P, 2]``, c2w ``[P, 2, 4, 4]``
    (in the frame of the pair's reference camera), depths ``[P, 2, H, W]``, K ``[P, 2, 3, 3]``,
    ref ``[P]`` (0 when camera a is the reference), im_conf ``[P, 2, H, W]``, conf ``[P, 2]``.
    """
    focals: torch.Tensor
    c2w: torch.Tensor
    depths: torch.Tensor
    K: torch.Tensor
    ref: torch.Tensor
    im_conf: torch.Tensor
    conf: torch.Tensor


def _pair_setup(pi_ab, pj_ab, ci_ab, cj_ab, pi_ba, pj_ba, ci_ba, cj_ba, min_conf_thr: float) -> dict:
    """Everything of :func:`pair_geometry` before the PnP: pair confidences, focals, K, reference camera, the
    other camera's points (seen from the reference) and its PnP mask."""
    P, H, W, _ = pi_ab.shape
    dev = pi_ab.device
    conf = torch.stack((ci_ab.mean(dim=(1, 2)) * cj_ab.mean(dim=(1, 2)),
                        ci_ba.mean(dim=(1, 2)) * cj_ba.mean(dim=(1, 2))), dim=1)  # [P, 2]
    focals = estimate_focal_knowing_depth(torch.cat((pi_ab, pi_ba))).reshape(2, P).T  # [P, 2]
    pp = torch.tensor([W / 2, H / 2], device=dev, dtype=pi_ab.dtype)
    K = intrinsics_from_focal_pp(focals.reshape(-1), pp.expand(2 * P, 2)).reshape(P, 2, 3, 3)
    im_conf = torch.stack((torch.maximum(ci_ab, cj_ba), torch.maximum(cj_ab, ci_ba)), dim=1)  # [P, 2, H, W]
    ref = (conf[:, 0] <= conf[:, 1]).long()  # 0: camera a is the world frame
    # the camera to place: b (seen in a's frame through pj_ab) when ref == 0, else a (through pj_ba)
    other_pts = torch.where((ref == 0)[:, None, None, None], pj_ab, pj_ba)
    other = 1 - ref
    msk = im_conf[torch.arange(P, device=dev), other] > min_conf_thr
    f_other = focals[torch.arange(P, device=dev), other]
    return dict(conf=conf, focals=focals, K=K, im_conf=im_conf, ref=ref, other=other, other_pts=other_pts,
                msk=msk, f_other=f_other)


def _pair_finish(st: dict, results: list, pi_ab: torch.Tensor, pi_ba: torch.Tensor) -> PairGeometry:
    """The rest of :func:`pair_geometry` given the PnP results ((focal, c2w) or None per pair)."""
    P, H, W, _ = pi_ab.shape
    dev = pi_ab.device
    ref, other, other_pts = st["ref"], st["other"], st["other_pts"]
    eye = torch.eye(4, device=dev, dtype=pi_ab.dtype)
    pose_other = torch.stack([eye if r is None else r[1].to(dev, pi_ab.dtype) for r in results])  # [P, 4, 4]
    c2w = eye.expand(P, 2, 4, 4).clone()
    c2w[torch.arange(P, device=dev), other] = pose_other
    # depths: reference camera = z of its own prediction; other = z of its points moved into its own frame
    w2c_other = rigid_inverse(pose_other)
    pts_other_cam = other_pts.reshape(P, -1, 3) @ w2c_other[:, :3, :3].transpose(1, 2) + w2c_other[:, None, :3, 3]
    d_other = pts_other_cam[..., 2].reshape(P, H, W)
    d_ref = torch.where((ref == 0)[:, None, None], pi_ab[..., 2], pi_ba[..., 2])
    depths = torch.where((ref == 0)[:, None, None, None], torch.stack((d_ref, d_other), 1),
                         torch.stack((d_other, d_ref), 1))
    return PairGeometry(focals=st["focals"], c2w=c2w, depths=depths, K=st["K"], ref=ref, im_conf=st["im_conf"],
                        conf=st["conf"])


def _pnp_jobs(st: dict, niter_PnP: int) -> list[dict]:
    """fast_pnp kwargs of every pair (inputs copied to host numpy once per chunk)."""
    dev = st["other_pts"].device
    pts = st["other_pts"].cpu().numpy()
    msk = st["msk"].cpu().numpy()
    f = st["f_other"].cpu().tolist()
    return [dict(pts3d=pts[p], focal=float(f[p]), msk=msk[p], device=dev, niter_PnP=niter_PnP)
            for p in range(len(f))]


@torch.no_grad()
def pair_geometry(pi_ab: torch.Tensor, pj_ab: torch.Tensor, ci_ab: torch.Tensor, cj_ab: torch.Tensor,
                  pi_ba: torch.Tensor, pj_ba: torch.Tensor, ci_ba: torch.Tensor, cj_ba: torch.Tensor,
                  min_conf_thr: float = 3.0, niter_PnP: int = 100, pnp_workers: int | None = None
                  ) -> PairGeometry:
    """Batched ``PairViewer`` for P pairs (a, b) given both directed predictions.

    p*_ab: ``[P, H, W, 3]`` (edge (a, b): ``pi`` = a's points in camera a, ``pj`` = b's points in camera a),
    c*_ab: ``[P, H, W]`` raw confidences; *_ba likewise for edge (b, a).
    The camera with the larger pair confidence mean(conf_i) * mean(conf_j) is the reference (identity); the
    other one is placed by RANSAC PnP (SQPNP, 5 px, ``niter_PnP`` iterations) of its points seen from the
    reference against its pixel grid, mask = its max confidence > ``min_conf_thr``; failure -> identity.
    """
    st = _pair_setup(pi_ab, pj_ab, ci_ab, cj_ab, pi_ba, pj_ba, ci_ba, cj_ba, min_conf_thr)
    results = pnp_many(_pnp_jobs(st, niter_PnP), max_workers=pnp_workers)
    return _pair_finish(st, results, pi_ab, pi_ba)


def _pair_order(edges: list[tuple[int, int]]) -> tuple[list[int], list[int]]:
    """(forward, reverse) edge indices of every unordered pair (the edge listed first is the forward one)."""
    pos = {(int(i), int(j)): k for k, (i, j) in enumerate(edges)}
    fwd, rev = [], []
    for k, (i, j) in enumerate(edges):
        r = pos.get((int(j), int(i)))
        if r is None:
            raise ValueError(f"motion masks need a symmetrized pair graph; edge ({i}, {j}) has no reverse")
        if k < r:
            fwd.append(k)
            rev.append(r)
    return fwd, rev


def _normalised_errors(g: PairGeometry, flow_ab: torch.Tensor, flow_ba: torch.Tensor, faithful: bool):
    """Ego flows a->b and b->a ``[p, 2, H, W]`` of the pair geometries ``g`` and the error maps |ego - flow|
    ``[2p, HW]`` (a->b rows, then b->a), each normalised by its own min and max (a constant map gives 0 unless
    ``faithful``, bug 14.14). Returns (normalised errors, ego_ab, ego_ba)."""
    R, T = g.c2w[:, :, :3, :3], g.c2w[:, :, :3, 3]
    Kinv = inv_intrinsics(g.K)
    disp = 1 / (g.depths + 1e-6)  # [p, 2, H, W]
    ego_ab = ego_flow(R[:, 0], T[:, 0], R[:, 1], T[:, 1], disp[:, 0:1], g.K[:, 1], Kinv[:, 0])
    ego_ba = ego_flow(R[:, 1], T[:, 1], R[:, 0], T[:, 0], disp[:, 1:2], g.K[:, 0], Kinv[:, 1])
    p = len(flow_ab)
    err_a = torch.linalg.vector_norm(ego_ab - flow_ab, dim=1).reshape(p, -1)
    err_b = torch.linalg.vector_norm(ego_ba - flow_ba, dim=1).reshape(p, -1)
    errs = torch.cat((err_a, err_b))  # [2p, HW]
    mn = errs.min(dim=1, keepdim=True).values
    mx = errs.max(dim=1, keepdim=True).values
    rng = mx - mn
    if not faithful:
        rng = rng.clamp_min(torch.finfo(rng.dtype).tiny)
    return (errs - mn) / rng, ego_ab, ego_ba


def _pipelined_pnp(n_pairs: int, chunk_size: int, niter_PnP: int, prepare, finish) -> None:
    """For each chunk start s: ``st = prepare(s)``, its RANSAC PnPs, then ``finish(s, st, results)``.

    The RANSAC PnPs (OpenCV, CPU) of a chunk run in a thread pool while the next chunks are prepared on the
    device; at most ~2 x workers pairs are in flight, so the memory stays bounded. Chunks are finished in order
    (same accumulation order as a sequential loop).
    """
    workers = max(1, min(n_pairs, os.cpu_count() or 1))
    pending: deque = deque()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for s in range(0, n_pairs, chunk_size):
            st = prepare(s)
            futures = [pool.submit(fast_pnp, **job) for job in _pnp_jobs(st, niter_PnP)]
            st["other_pts"] = None
            pending.append((s, st, futures))
            while pending and sum(len(p[2]) for p in pending) > max(2 * workers, chunk_size):
                s0, st0, fut0 = pending.popleft()
                finish(s0, st0, [f.result() for f in fut0])
        while pending:
            s0, st0, fut0 = pending.popleft()
            finish(s0, st0, [f.result() for f in fut0])


@torch.no_grad()
def motion_masks_from_pairs(stacked_pred_i: torch.Tensor, stacked_pred_j: torch.Tensor,
                            stacked_conf_i: torch.Tensor, stacked_conf_j: torch.Tensor,
                            edges: list[tuple[int, int]], flow_ij: torch.Tensor, flow_ji: torch.Tensor | None,
                            n_imgs: int, motion_mask_thre: float = 0.35, min_conf_thr: float = 3.0,
                            niter_PnP: int = 100, chunk_size: int | None = None, faithful: bool = False,
                            return_details: bool = False):
    """Dynamic masks from optical flow versus ego-motion flow (optimizer.md 7.1), all pairs batched.

    stacked_pred_*: ``[E, H, W, 3]``, stacked_conf_*: ``[E, H, W]``, flow_ij / flow_ji: ``[E, 2, H, W]``
    (flow from image i to j of each edge and back; ``flow_ji=None``: flow_ji of an edge is flow_ij of its reverse
    edge, read from ``flow_ij``); edges: E directed (i, j), symmetrized.
    For each unordered pair (a, b), with e = (a, b) the edge listed first and r its reverse: two-view geometry
    (:func:`pair_geometry`), ego flows a->b and b->a, error maps |ego - flow| (flow_ij[e], flow_ji[e]),
    each normalised by its own min and max; each frame averages its maps; mask = mean > ``motion_mask_thre``.
    A constant error map gives 0 instead of the original's NaN unless ``faithful`` (bug 14.14).
    ``chunk_size``: unordered pairs processed at once (default: about 2M pixels per chunk, which bounds the
    temporaries to a few hundred MB at any size).
    Returns masks ``[N, H, W]`` bool (+ details dict: pairs, ego flows, mean normalised error).
    """
    E, H, W, _ = stacked_pred_i.shape
    if not chunk_size:
        chunk_size = max(1, (1 << 21) // max(H * W, 1))
    dev = stacked_pred_i.device
    fwd, rev = _pair_order(edges)
    fwd_t = torch.tensor(fwd, device=dev, dtype=torch.long)
    rev_t = torch.tensor(rev, device=dev, dtype=torch.long)
    src_a = torch.tensor([edges[k][0] for k in fwd], device=dev, dtype=torch.long)
    src_b = torch.tensor([edges[k][1] for k in fwd], device=dev, dtype=torch.long)

    err_sum = torch.zeros(n_imgs, H * W, device=dev, dtype=torch.float32)
    err_cnt = torch.zeros(n_imgs, device=dev, dtype=torch.float32)
    ego_ab_all, ego_ba_all = [], []

    def gather(s):
        e, r = fwd_t[s:s + chunk_size], rev_t[s:s + chunk_size]
        return e, r, (stacked_pred_i[e], stacked_pred_j[e], stacked_conf_i[e], stacked_conf_j[e],
                      stacked_pred_i[r], stacked_pred_j[r], stacked_conf_i[r], stacked_conf_j[r])

    def finish(s, st, results):
        e, r = fwd_t[s:s + chunk_size], rev_t[s:s + chunk_size]
        pi_ab, pi_ba = stacked_pred_i[e], stacked_pred_i[r]
        # the other camera's points, recomputed from the stored predictions (not kept while the PnPs run)
        st["other_pts"] = torch.where((st["ref"] == 0)[:, None, None, None], stacked_pred_j[e], stacked_pred_j[r])
        g = _pair_finish(st, results, pi_ab, pi_ba)
        norm_err, ego_ab, ego_ba = _normalised_errors(g, flow_ij[e], flow_ij[r] if flow_ji is None else flow_ji[e],
                                                      faithful)
        frames = torch.cat((src_a[s:s + chunk_size], src_b[s:s + chunk_size]))
        err_sum.index_add_(0, frames, norm_err)
        err_cnt.index_add_(0, frames, torch.ones_like(frames, dtype=torch.float32))
        if return_details:
            ego_ab_all.append(ego_ab)
            ego_ba_all.append(ego_ba)

    def prepare(s):
        _, _, inputs = gather(s)
        return _pair_setup(*inputs, min_conf_thr=min_conf_thr)

    _pipelined_pnp(len(fwd), chunk_size, niter_PnP, prepare, finish)
    mean_err = err_sum / err_cnt.clamp_min(1)[:, None]
    masks = (mean_err > motion_mask_thre).reshape(n_imgs, H, W)
    if err_cnt.eq(0).any():
        log.warning("frames %s are in no image pair; their dynamic masks are empty",
                    torch.nonzero(err_cnt == 0).ravel().tolist())
    if not return_details:
        return masks
    details = dict(pairs=[edges[k] for k in fwd], fwd_edges=fwd, rev_edges=rev,
                   ego_flow_ab=torch.cat(ego_ab_all) if ego_ab_all else None,
                   ego_flow_ba=torch.cat(ego_ba_all) if ego_ba_all else None,
                   mean_norm_err=mean_err.reshape(n_imgs, H, W))
    return masks, details
