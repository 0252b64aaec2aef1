"""Initialisation of the global optimizer (optimizer.md section 8).

- :func:`estimate_focal_knowing_depth`: focal from a pointmap (Weiszfeld or median), batched.
- :func:`rigid_points_registration`: weighted similarity (Umeyama with scale) through roma, batched.
- :func:`fast_pnp`: OpenCV RANSAC PnP (SQPNP), optionally searching the focal.
- :func:`align_multiple_poses`: similarity between two sets of camera poses.
- :func:`minimum_spanning_tree`: placement of all pointmaps along the maximum-score spanning tree;
- :func:`align_to_known_poses`, :func:`pair_poses_from_pts3d`, :func:`depths_from_pts3d`,
  :func:`known_poses_pair_init`, :func:`place_new_frames`, :func:`poses_of_new_frames`: the initial values of a
  scene, computed from its predictions and RETURNED (the optimizer applies them: ``scene_init.py``).
"""
from __future__ import annotations

import logging
from functools import lru_cache
from typing import Sequence

import cv2
import numpy as np
import roma
import scipy.sparse as sp
import torch
from scipy.sparse.csgraph import minimum_spanning_tree as _scipy_mst
from scipy.spatial.distance import pdist

from monst3r.cloud_opt.edges import compute_edge_scores, edge_str
from monst3r.errors import Monst3rInputError
from monst3r.utils.geometry import geotrf, inv, sRT_to_4x4, xy_grid

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------------------
# focal
# ----------------------------------------------------------------------------------------------------------
@torch.no_grad()
def estimate_focal_knowing_depth(pts3d: torch.Tensor, pp: torch.Tensor | None = None, focal_mode: str = "weiszfeld",
                                 min_focal: float = 0.0, max_focal: float = np.inf) -> torch.Tensor:
    """Focal ``[B]`` of pointmaps ``[B, H, W, 3]`` given in their own camera frame (optimizer.md 8.2).

    pp: ``[B, 2]`` principal points (default (W/2, H/2)). 'weiszfeld': 10 re-weighted least-squares
    iterations of f minimising sum |c(p) - f r(p)| with c = pixel - pp and r = (x/z, y/z); 'median': median of
    the per-pixel votes u z / x and v z / y. The result is clipped to [min, max] * max(H, W) / (2 tan 30 deg).
    """
    B, H, W, _ = pts3d.shape
    dev = pts3d.device
    if pp is None:
        pp = torch.tensor([W / 2, H / 2], device=dev, dtype=pts3d.dtype).expand(B, 2)
    pixels = xy_grid(W, H, device=dev, dtype=pts3d.dtype).reshape(1, -1, 2) - pp.reshape(B, 1, 2)  # [B, HW, 2]
    pts = pts3d.reshape(B, -1, 3)
    if focal_mode == "median":
        u, v = pixels.unbind(-1)
        x, y, z = pts.unbind(-1)
        fx_votes = (u * z) / x
        fy_votes = (v * z) / y
        votes = torch.cat((fx_votes, fy_votes), dim=-1)
        focal = torch.nanmedian(votes, dim=-1).values
    elif focal_mode == "weiszfeld":
        xy_over_z = torch.nan_to_num(pts[..., :2] / pts[..., 2:3], posinf=0.0, neginf=0.0)  # [B, HW, 2]
        dot_xy_px = (xy_over_z * pixels).sum(dim=-1)
        dot_xy_xy = xy_over_z.square().sum(dim=-1)
        focal = dot_xy_px.mean(dim=1) / dot_xy_xy.mean(dim=1)
        for _ in range(10):
            dis = (pixels - focal.view(-1, 1, 1) * xy_over_z).norm(dim=-1)
            w = dis.clip(min=1e-8).reciprocal()
            focal = (w * dot_xy_px).mean(dim=1) / (w * dot_xy_xy).mean(dim=1)
    else:
        raise ValueError(f"bad focal_mode {focal_mode!r}; use 'weiszfeld' or 'median'")
    focal_base = max(H, W) / (2 * np.tan(np.deg2rad(60) / 2))
    return focal.clip(min=min_focal * focal_base, max=max_focal * focal_base)


# ----------------------------------------------------------------------------------------------------------
# registration
# ----------------------------------------------------------------------------------------------------------
@torch.no_grad()
def rigid_points_registration(pts1: torch.Tensor, pts2: torch.Tensor, conf: torch.Tensor | None,
                              batch_dims: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Similarity (s, R, T) minimising sum_p w_p |s R x_p + T - y_p|^2 (optimizer.md 8.3; roma, normalised weights).

    pts1, pts2: ``[*B, ..., 3]`` with ``batch_dims`` leading batch dims; conf: ``[*B, ...]`` weights or None.
    Unbatched: pts ``[H, W, 3]``, conf ``[H, W]`` -> s scalar, R ``[3, 3]``, T ``[3]``.
    """
    bshape = pts1.shape[:batch_dims]
    x = pts1.reshape(*bshape, -1, 3)
    y = pts2.reshape(*bshape, -1, 3)
    w = None if conf is None else conf.reshape(*bshape, -1)
    R, T, s = roma.rigid_points_registration(x, y, weights=w, compute_scaling=True)
    return s, R, T


# ----------------------------------------------------------------------------------------------------------
# PnP
# ----------------------------------------------------------------------------------------------------------
@lru_cache(maxsize=8)
def _pixel_grid_np(H: int, W: int) -> np.ndarray:
    return np.ascontiguousarray(xy_grid(W, H).astype(np.float32))  # [H, W, 2]


def fast_pnp(pts3d: torch.Tensor | np.ndarray, focal: float | None, msk: torch.Tensor | np.ndarray,
             device=None, pp=None, niter_PnP: int = 10) -> tuple[float, torch.Tensor] | None:
    """RANSAC PnP (OpenCV SQPNP, 5 px) of a pointmap ``[H, W, 3]`` against its pixel grid (optimizer.md 8.4).

    msk: ``[H, W]`` bool (pixels used). focal None: try 21 focals geometrically spaced in [S/2, 3S]
    (S = max(H, W)) and keep the one with most inliers. Returns (focal, c2w ``[4, 4]`` float32 on ``device``)
    or None (fewer than 4 points, or no solution).
    """
    if isinstance(pts3d, torch.Tensor):
        device = device if device is not None else pts3d.device
        pts3d = pts3d.detach().cpu().numpy()
    if isinstance(msk, torch.Tensor):
        msk = msk.detach().cpu().numpy()
    msk = np.asarray(msk, dtype=bool)
    if msk.sum() < 4:
        return None
    H, W = msk.shape
    pixels = _pixel_grid_np(H, W)
    S = max(W, H)
    tentative_focals = np.geomspace(S / 2, S * 3, 21) if focal is None else [float(focal)]
    if pp is None:
        pp = (W / 2, H / 2)
    elif isinstance(pp, torch.Tensor):
        pp = tuple(float(v) for v in pp.detach().cpu().reshape(-1))
    obj = np.ascontiguousarray(pts3d[msk], dtype=np.float32)
    img = np.ascontiguousarray(pixels[msk])
    if not np.isfinite(obj).all():
        keep = np.isfinite(obj).all(axis=1)
        obj, img = obj[keep], img[keep]
        if len(obj) < 4:
            return None
    best = (0, None, None, None)
    for f in tentative_focals:
        K = np.float32([(f, 0, pp[0]), (0, f, pp[1]), (0, 0, 1)])
        try:
            success, rvec, tvec, inliers = cv2.solvePnPRansac(obj, img, K, None, iterationsCount=niter_PnP,
                                                              reprojectionError=5, flags=cv2.SOLVEPNP_SQPNP)
        except cv2.error as err:  # degenerate input
            log.debug("solvePnPRansac failed: %s", err)
            continue
        if not success or inliers is None:
            continue
        score = len(inliers)
        if score > best[0]:
            best = (score, rvec, tvec, f)
    if not best[0]:
        return None
    _, rvec, tvec, best_focal = best
    R = cv2.Rodrigues(rvec)[0]
    w2c = np.eye(4)
    w2c[:3, :3] = R
    w2c[:3, 3] = tvec.ravel()
    c2w = torch.tensor(np.linalg.inv(w2c), dtype=torch.float32, device=device)
    return float(best_focal), c2w


def pnp_many(jobs: Sequence[dict], max_workers: int | None = None) -> list:
    """Run :func:`fast_pnp` on several independent inputs in a thread pool (OpenCV releases the GIL).

    Each job is the kwargs dict of one :func:`fast_pnp` call; results come back in order.
    """
    if len(jobs) <= 1 or (max_workers is not None and max_workers <= 1):
        return [fast_pnp(**j) for j in jobs]
    from concurrent.futures import ThreadPoolExecutor
    import os
    n = max_workers or min(len(jobs), os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=n) as ex:
        return list(ex.map(lambda j: fast_pnp(**j), jobs))


def pnp_poses(jobs: Sequence[dict], frames: Sequence[int], device, failure: str | None = None,
              level: int = logging.DEBUG) -> list[torch.Tensor]:
    """c2w ``[4, 4]`` of each job by :func:`pnp_many`, the identity where PnP fails; ``failure`` (formatted with
    the frame index) is logged at ``level`` for each failure."""
    poses = []
    for k, res in zip(frames, pnp_many(jobs)):
        if res is None:
            if failure:
                log.log(level, failure, k)
            poses.append(torch.eye(4, device=device))
        else:
            poses.append(res[1])
    return poses


# ----------------------------------------------------------------------------------------------------------
# poses
# ----------------------------------------------------------------------------------------------------------
def get_med_dist_between_poses(poses: torch.Tensor) -> float:
    """Median pairwise distance between camera centres of c2w poses ``[n, 4, 4]``."""
    return float(np.median(pdist(poses[:, :3, 3].detach().cpu().double().numpy())))


@torch.no_grad()
def align_multiple_poses(src_poses: torch.Tensor, target_poses: torch.Tensor
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Similarity (s, R, T) mapping c2w poses ``src`` onto ``target`` (both ``[n, 4, 4]``, n >= 2).

    Registers the camera centres and the centres moved by eps along each camera's z axis
    (eps = median pairwise centre distance / 100).
    """
    def center_and_z(poses):
        eps = get_med_dist_between_poses(poses) / 100
        return torch.cat((poses[:, :3, 3], poses[:, :3, 3] + eps * poses[:, :3, 2]))
    R, T, s = roma.rigid_points_registration(center_and_z(src_poses), center_and_z(target_poses),
                                             compute_scaling=True)
    return s, R, T


# ----------------------------------------------------------------------------------------------------------
# minimum spanning tree
# ----------------------------------------------------------------------------------------------------------
def _tree_links(n_imgs: int, edge_scores: dict[tuple[int, int], float]) -> list[tuple[float, int, int]]:
    """Maximum-score spanning tree (scipy MST on -score); each link keeps its higher-scoring direction."""
    i_j = np.array(list(edge_scores.keys()), dtype=np.int64)
    scores = np.array(list(edge_scores.values()), dtype=np.float64)
    graph = sp.coo_matrix((-scores, i_j.T), shape=(n_imgs, n_imgs)).tocsr()
    T = _scipy_mst(graph).tocoo()
    return sorted(zip((-T.data).tolist(), T.row.tolist(), T.col.tolist()))


@torch.no_grad()
def minimum_spanning_tree(imshapes, edges, pred_i: dict, pred_j: dict, conf_i: dict, conf_j: dict, im_conf,
                          min_conf_thr: float, device, has_im_poses: bool = True, niter_PnP: int = 10,
                          faithful: bool = False, return_traversal: bool = False):
    """Place every image's pointmap in a common frame along the maximum-score spanning tree (optimizer.md 8.1).

    pred_i / pred_j / conf_i / conf_j: dicts keyed ``"i_j"`` of ``[H, W, 3]`` / ``[H, W]`` tensors; im_conf: list of
    ``[H, W]``. Returns (pts3d list of ``[H, W, 3]`` in the root camera frame, msp_edges, im_focals, im_poses
    ``[n, 4, 4]`` c2w) (+ the traversal order when ``return_traversal``).

    ``faithful``: reproduce the original's stale edge key when a focal is estimated inside the traversal loop
    (bug 14.2: the focal of image i is estimated from ``pred_i`` of the previously processed edge); the default
    uses the edge being processed.
    """
    n_imgs = len(imshapes)
    edge_scores = compute_edge_scores([tuple(e) for e in edges], [conf_i[edge_str(*e)] for e in edges],
                                      [conf_j[edge_str(*e)] for e in edges])
    pts3d, im_poses, im_focals, msp_edges, traversal = _traverse_tree(
        _tree_links(n_imgs, edge_scores), n_imgs, pred_i, pred_j, conf_i, conf_j, device, has_im_poses, faithful)
    if has_im_poses:
        im_poses_t = _complete_focals_and_poses(pts3d, im_poses, im_focals, edge_scores, pred_i, im_conf,
                                                min_conf_thr, device, niter_PnP)
    else:
        im_poses_t = im_focals = None
    out = (pts3d, msp_edges, im_focals, im_poses_t)
    return out + (traversal,) if return_traversal else out


def _focal_of(pred_i: dict, key: str) -> float:
    return float(estimate_focal_knowing_depth(pred_i[key][None])[0])


def _traverse_tree(todo, n_imgs, pred_i, pred_j, conf_i, conf_j, device, has_im_poses, faithful):
    """Walk the tree links ``todo`` (best last) from the best one, registering each new image's pointmap onto the
    placed ones. Returns (pts3d, im_poses, im_focals (lists, None where unknown), msp_edges, traversal)."""
    pts3d: list[torch.Tensor | None] = [None] * n_imgs
    im_poses: list[torch.Tensor | None] = [None] * n_imgs
    im_focals: list[float | None] = [None] * n_imgs
    traversal = []

    score, i, j = todo.pop()
    i_j = edge_str(i, j)
    traversal.append((i, j))
    pts3d[i] = pred_i[i_j].clone()
    pts3d[j] = pred_j[i_j].clone()
    done = {i, j}
    msp_edges = [(i, j)]
    if has_im_poses:
        im_poses[i] = torch.eye(4, device=device)
        im_focals[i] = _focal_of(pred_i, i_j)

    while todo:
        score, i, j = todo.pop()
        if im_focals[i] is None:
            # faithful: i_j still holds the key of the previously processed edge
            im_focals[i] = _focal_of(pred_i, i_j if faithful else edge_str(i, j))
        i_j = edge_str(i, j)
        if i in done or j in done:
            # register the placed image's prediction onto its points, move the other image's points with it
            a, b, pa, pb, ca = ((i, j, pred_i, pred_j, conf_i) if i in done else (j, i, pred_j, pred_i, conf_j))
            s, R, T = rigid_points_registration(pa[i_j], pts3d[a], conf=ca[i_j])
            trf = sRT_to_4x4(s, R, T, device)
            pts3d[b] = geotrf(trf, pb[i_j])
            done.add(b)
            msp_edges.append((i, j))
            traversal.append((i, j))
            if has_im_poses and im_poses[i] is None:
                im_poses[i] = sRT_to_4x4(1, R, T, device)
        else:
            todo.insert(0, (score, i, j))  # retry later
    return pts3d, im_poses, im_focals, msp_edges, traversal


def _complete_focals_and_poses(pts3d, im_poses, im_focals, edge_scores, pred_i, im_conf, min_conf_thr, device,
                               niter_PnP) -> torch.Tensor:
    """Fill the missing focals from the best edges and the missing poses with PnP (identity when it fails), in
    place in ``im_focals``; returns the poses ``[n, 4, 4]``."""
    for (i, j), _ in sorted(edge_scores.items(), key=lambda kv: -kv[1]):
        if im_focals[i] is None:
            im_focals[i] = _focal_of(pred_i, edge_str(i, j))
    missing = [k for k in range(len(pts3d)) if im_poses[k] is None]
    jobs = [dict(pts3d=pts3d[k], focal=im_focals[k], msk=im_conf[k] > min_conf_thr, device=device,
                 niter_PnP=niter_PnP) for k in missing]
    for k, c2w in zip(missing, pnp_poses(jobs, missing, device, "PnP failed for image %d during MST init; "
                                                                   "using identity")):
        im_poses[k] = c2w
    return torch.stack([p.float() for p in im_poses])


# ----------------------------------------------------------------------------------------------------------
# initial values of a scene (computed here, applied by the optimizer: scene_init.py)
# ----------------------------------------------------------------------------------------------------------
@torch.no_grad()
def align_to_known_poses(pts3d: list[torch.Tensor], im_poses: torch.Tensor, nkp: int, known_msk: torch.Tensor,
                         known_poses: torch.Tensor | None) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Move a placement (pts3d ``[H, W, 3]`` each, c2w ``[N, 4, 4]``) onto the ``nkp`` known poses (``[N]`` mask,
    ``[N, 4, 4]``): unchanged without known poses."""
    if nkp == 1:
        # The original raises NotImplementedError here; with a single known pose we move the whole placement
        # rigidly (no scale) so that this camera lands on its known pose.
        k = int(torch.nonzero(known_msk)[0])
        trf = known_poses[k] @ inv(im_poses[k])
        pts3d = [geotrf(trf, p) for p in pts3d]
        im_poses = trf @ im_poses
    elif nkp > 1:
        s, R, T = align_multiple_poses(im_poses[known_msk], known_poses[known_msk])
        trf = sRT_to_4x4(s, R, T, device=known_poses.device)
        pts3d = [geotrf(trf, p) for p in pts3d]
        im_poses = trf @ im_poses
        im_poses[:, :3, :3] /= s  # remove the scale from the rotation part
    return pts3d, im_poses


@torch.no_grad()
def pair_poses_from_pts3d(edges, pts3d: Sequence[torch.Tensor], same_size: bool, stacked_pred_i: torch.Tensor,
                          stacked_conf_i: torch.Tensor, pred_i: dict, conf_i: dict) -> list[tuple]:
    """Pair pose of every edge = similarity registering its view-1 prediction onto image i's world points.

    stacked_pred_i ``[E, maxHW, 3]`` / stacked_conf_i ``[E, maxHW]`` (used when all images have one size, batched
    by 64 edges), else the dicts keyed ``"i_j"``. Returns (edge, R ``[3, 3]``, T ``[3]``, scale) per edge.
    """
    out = []
    if same_size:
        ei = [i for i, _ in edges]
        for c in range(0, len(edges), 64):  # batched registration, in chunks to bound memory
            tgt = torch.stack([pts3d[i].reshape(-1, 3) for i in ei[c:c + 64]])
            s, R, T = rigid_points_registration(stacked_pred_i[c:c + 64], tgt, conf=stacked_conf_i[c:c + 64],
                                                batch_dims=1)
            out.extend((c + k, R[k], T[k], s[k]) for k in range(len(tgt)))
    else:
        for e, (i, j) in enumerate(edges):
            i_j = edge_str(i, j)
            s, R, T = rigid_points_registration(pred_i[i_j], pts3d[i], conf=conf_i[i_j])
            out.append((e, R, T, s))
    return out


@torch.no_grad()
def depths_from_pts3d(pts3d: list[torch.Tensor], im_poses: torch.Tensor, s_factor: float
                      ) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Scale a placement by the pair-scale normalisation ``s_factor``: (depth maps ``[H, W]`` of every image in
    its camera, c2w poses ``[N, 4, 4]``) (optimizer.md 8.1 step 7)."""
    im_poses = im_poses.clone()
    im_poses[:, :3, 3] *= s_factor
    pts3d = [p * s_factor for p in pts3d]
    return [geotrf(inv(im_poses[i]), pts3d[i])[..., 2] for i in range(len(pts3d))], im_poses


@torch.no_grad()
def known_poses_pair_init(edges, pred_i: dict, pred_j: dict, conf_i: dict, conf_j: dict, known_poses: torch.Tensor,
                          focals: torch.Tensor, pps: torch.Tensor, device, min_conf_thr: float, niter_PnP: int,
                          faithful: bool) -> tuple[list[tuple], dict]:
    """``init='known_poses'`` (optimizer.md 8.5): pair poses from PnP + pose alignment, depths from view-1 points.

    Returns ((edge, R, T, scale) per edge, {image: depth ``[H, W]``} from its best-confidence edge). A PnP failure
    falls back to a Procrustes alignment (faithful: raises, as the original).
    """
    pair_poses = []
    best_depth: dict[int, tuple[float, torch.Tensor, torch.Tensor]] = {}
    for e, (i, j) in enumerate(edges):
        i_j = edge_str(i, j)
        ci = conf_i[i_j]
        P1 = torch.eye(4, device=device)
        msk = ci > min(min_conf_thr, float(ci.min()) - 0.1)
        res = fast_pnp(pred_j[i_j], float(focals[i].mean()), msk=msk, device=device, pp=pps[i], niter_PnP=niter_PnP)
        if res is None:
            if faithful:
                raise RuntimeError(f"PnP failed for pair {i_j} during known-poses init")
            # rigid registration of image j's points (camera-i frame) onto its own-frame prediction
            other = edge_str(j, i)
            if other in pred_i:
                _, R, T = rigid_points_registration(pred_i[other], pred_j[i_j], conf_j[i_j])
                P2 = sRT_to_4x4(1, R, T, device)
            else:
                P2 = torch.eye(4, device=device)
        else:
            P2 = res[1]
        s, R, T = align_multiple_poses(torch.stack((P1, P2)), known_poses[[i, j]])
        pair_poses.append((e, R, T, s))
        score = float(ci.mean())
        if i not in best_depth or score > best_depth[i][0]:
            best_depth[i] = (score, pred_i[i_j][..., 2], s)
    return pair_poses, {k: depth * s for k, (_, depth, s) in best_depth.items()}


@torch.no_grad()
def place_new_frames(edges, pts3d: list, pred_i: dict, pred_j: dict, conf_i: dict, conf_j: dict, device) -> list:
    """Window-wise continuation (optimizer.md 9.1): world points of the frames after the placed previous ones.

    ``pts3d``: N entries, ``[H, W, 3]`` for the previous frames and None for the new ones (filled in place, in
    order). For each new frame j the candidates are the edges (i, j) whose image i is already placed: image i's
    prediction is registered onto its placed points (conf_i weights), image j's points are mapped with the same
    similarity, and the candidates are averaged with per-pixel weights conf_j. (The original only scans the first
    half of the edge list, which gives the same candidates for a symmetrized graph built with i < j first; we
    accept any order.)
    """
    for j in range(len(pts3d)):
        if pts3d[j] is not None:
            continue
        num, den = 0, 0
        for i, jj in edges:
            if jj != j or pts3d[i] is None:
                continue
            i_j = edge_str(i, j)
            s, R, T = rigid_points_registration(pred_i[i_j], pts3d[i], conf=conf_i[i_j])
            cand = geotrf(sRT_to_4x4(s, R, T, device), pred_j[i_j])
            w = conf_j[i_j][..., None]
            num = num + w * cand
            den = den + w
        if isinstance(den, int):
            pts3d[j] = _place_from_outgoing_edge(edges, pts3d, j, pred_i, pred_j, conf_j, device)
        else:
            pts3d[j] = num / den
    return pts3d


def _place_from_outgoing_edge(edges, pts3d, j, pred_i, pred_j, conf_j, device) -> torch.Tensor:
    """No edge (i, j) from a placed image: use an edge (j, k) with k placed."""
    for jj, k in edges:
        if jj != j or pts3d[k] is None:
            continue
        j_k = edge_str(j, k)
        s, R, T = rigid_points_registration(pred_j[j_k], pts3d[k], conf=conf_j[j_k])
        return geotrf(sRT_to_4x4(s, R, T, device), pred_i[j_k])
    raise Monst3rInputError(f"frame {j} is not connected to any earlier frame by an image pair; "
                            "use a scene graph that links consecutive frames")


@torch.no_grad()
def poses_of_new_frames(pts3d: list, new: list[int], focals: torch.Tensor, pps: torch.Tensor, im_conf,
                        min_conf_thr: float, device, niter_PnP: int) -> list[tuple]:
    """(frame, c2w ``[4, 4]`` from PnP with its focal (identity on failure), depth ``[H, W]`` in that camera) of
    the frames ``new``."""
    jobs = [dict(pts3d=pts3d[k], focal=float(focals[k]), msk=im_conf[k] > min_conf_thr, device=device, pp=pps[k],
                 niter_PnP=niter_PnP) for k in new]
    return [(k, c2w, geotrf(inv(c2w), pts3d[k])[..., 2]) for k, c2w in zip(new, pnp_poses(jobs, new, device))]
