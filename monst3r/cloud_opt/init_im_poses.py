"""Initialisation of the global optimizer (optimizer.md section 8).

- :func:`estimate_focal_knowing_depth`: focal from a pointmap (Weiszfeld or median), batched.
- :func:`rigid_points_registration`: weighted similarity (Umeyama with scale) through roma, batched.
- :func:`fast_pnp`: OpenCV RANSAC PnP (SQPNP), optionally searching the focal.
- :func:`align_multiple_poses`: similarity between two sets of camera poses.
- :func:`minimum_spanning_tree`, :func:`init_minimum_spanning_tree`, :func:`init_from_pts3d`,
  :func:`init_from_known_poses`, :func:`init_from_previous_result`: the initialisations of a scene.
"""
from __future__ import annotations

import logging
from functools import lru_cache
from typing import TYPE_CHECKING, Sequence

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

if TYPE_CHECKING:  # pragma: no cover
    from monst3r.cloud_opt.base_opt import BasePCOptimizer

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
    todo = _tree_links(n_imgs, edge_scores)

    pts3d: list[torch.Tensor | None] = [None] * n_imgs
    im_poses: list[torch.Tensor | None] = [None] * n_imgs
    im_focals: list[float | None] = [None] * n_imgs
    traversal = []

    def focal_of(key):
        return float(estimate_focal_knowing_depth(pred_i[key][None])[0])

    score, i, j = todo.pop()
    i_j = edge_str(i, j)
    traversal.append((i, j))
    pts3d[i] = pred_i[i_j].clone()
    pts3d[j] = pred_j[i_j].clone()
    done = {i, j}
    msp_edges = [(i, j)]
    if has_im_poses:
        im_poses[i] = torch.eye(4, device=device)
        im_focals[i] = focal_of(i_j)

    while todo:
        score, i, j = todo.pop()
        if im_focals[i] is None:
            # faithful: i_j still holds the key of the previously processed edge
            im_focals[i] = focal_of(i_j if faithful else edge_str(i, j))
        i_j = edge_str(i, j)
        if i in done:
            s, R, T = rigid_points_registration(pred_i[i_j], pts3d[i], conf=conf_i[i_j])
            trf = sRT_to_4x4(s, R, T, device)
            pts3d[j] = geotrf(trf, pred_j[i_j])
            done.add(j)
            msp_edges.append((i, j))
            traversal.append((i, j))
            if has_im_poses and im_poses[i] is None:
                im_poses[i] = sRT_to_4x4(1, R, T, device)
        elif j in done:
            s, R, T = rigid_points_registration(pred_j[i_j], pts3d[j], conf=conf_j[i_j])
            trf = sRT_to_4x4(s, R, T, device)
            pts3d[i] = geotrf(trf, pred_i[i_j])
            done.add(i)
            msp_edges.append((i, j))
            traversal.append((i, j))
            if has_im_poses and im_poses[i] is None:
                im_poses[i] = sRT_to_4x4(1, R, T, device)
        else:
            todo.insert(0, (score, i, j))  # retry later

    if has_im_poses:
        # complete the focals from the best edges
        for (i, j), _ in sorted(edge_scores.items(), key=lambda kv: -kv[1]):
            if im_focals[i] is None:
                im_focals[i] = focal_of(edge_str(i, j))
        # and the poses with PnP
        missing = [k for k in range(n_imgs) if im_poses[k] is None]
        jobs = [dict(pts3d=pts3d[k], focal=im_focals[k], msk=im_conf[k] > min_conf_thr, device=device,
                     niter_PnP=niter_PnP) for k in missing]
        for k, res in zip(missing, pnp_many(jobs)):
            if res is None:
                log.debug("PnP failed for image %d during MST init; using identity", k)
                im_poses[k] = torch.eye(4, device=device)
            else:
                im_poses[k] = res[1]
        im_poses_t = torch.stack([p.float() for p in im_poses])
    else:
        im_poses_t = im_focals = None

    out = (pts3d, msp_edges, im_focals, im_poses_t)
    return out + (traversal,) if return_traversal else out


# ----------------------------------------------------------------------------------------------------------
# initialisations acting on a scene
# ----------------------------------------------------------------------------------------------------------
@torch.no_grad()
def init_minimum_spanning_tree(self: "BasePCOptimizer", **kw):
    """Initialise all parameters from the MST placement (optimizer.md 8.1 + init_from_pts3d)."""
    device = self.device
    pts3d, _, im_focals, im_poses = minimum_spanning_tree(
        self.imshapes, self.edges, self.pred_i, self.pred_j, self.conf_i, self.conf_j, self.im_conf,
        self.min_conf_thr, device, has_im_poses=self.has_im_poses, faithful=self.faithful, **kw)
    self._root_idx = None
    return init_from_pts3d(self, pts3d, im_focals, im_poses)


@torch.no_grad()
def init_from_pts3d(self: "BasePCOptimizer", pts3d: list[torch.Tensor], im_focals, im_poses: torch.Tensor):
    """Set pair poses, depth maps, image poses and focals from per-image world pointmaps (optimizer.md 8.1 step 7)."""
    nkp, known_msk, known_poses = self.get_known_poses()
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
    # pair poses
    self._init_pw_poses_from_pts3d(pts3d)

    s_factor = float(self.get_pw_norm_scale_factor())
    im_poses = im_poses.clone()
    im_poses[:, :3, 3] *= s_factor
    pts3d = [p * s_factor for p in pts3d]

    if self.has_im_poses:
        for i in range(self.n_imgs):
            cam2world = im_poses[i]
            depth = geotrf(inv(cam2world), pts3d[i])[..., 2]
            self._set_depthmap(i, depth)
            self._set_pose(self.im_poses, i, cam2world)
            if im_focals[i] is not None and not self.shared_focal:
                self._set_focal(i, im_focals[i])
        if self.shared_focal:
            fs = [f for f in im_focals if f is not None]
            if fs:
                self._set_focal(0, sum(fs) / len(fs))
        if self.n_imgs > 2:
            self.init_depthmaps = [d.clone() for d in self.get_depthmaps()]
    return self


@torch.no_grad()
def init_from_known_poses(self: "BasePCOptimizer", niter_PnP: int = 10, min_conf_thr: float = 3.0):
    """``init='known_poses'`` (optimizer.md 8.5): pair poses from PnP + pose alignment, depths from view-1 points.

    The poses must have been preset (all images). Default (non-faithful) additions: images whose focal was
    not preset get a Weiszfeld focal estimate first (the original keeps max(H, W)), a PnP failure falls back
    to a Procrustes alignment instead of crashing, and the initial depth maps are stored for the depth prior.
    """
    if not getattr(self, "_poses_preset", False):
        raise Monst3rInputError("init='known_poses' needs a pose for every image; give 'camera_pose' in every "
                                "view or call preset_pose() with all poses first")
    known_poses = self.get_im_poses().detach()
    if not self.faithful:
        self._estimate_missing_focals()
    focals = self.get_focals().detach()
    pps = self.get_principal_points().detach()
    best_depth: dict[int, tuple[float, torch.Tensor, torch.Tensor]] = {}
    for e, (i, j) in enumerate(self.edges):
        i_j = edge_str(i, j)
        ci = self.conf_i[i_j]
        P1 = torch.eye(4, device=self.device)
        msk = ci > min(min_conf_thr, float(ci.min()) - 0.1)
        res = fast_pnp(self.pred_j[i_j], float(focals[i].mean()), msk=msk, device=self.device, pp=pps[i],
                       niter_PnP=niter_PnP)
        if res is None:
            if self.faithful:
                raise RuntimeError(f"PnP failed for pair {i_j} during known-poses init")
            # rigid registration of image j's points (camera-i frame) onto its own-frame prediction
            other = edge_str(j, i)
            if other in self.pred_i:
                _, R, T = rigid_points_registration(self.pred_i[other], self.pred_j[i_j], self.conf_j[i_j])
                P2 = sRT_to_4x4(1, R, T, self.device)
            else:
                P2 = torch.eye(4, device=self.device)
        else:
            P2 = res[1]
        s, R, T = align_multiple_poses(torch.stack((P1, P2)), known_poses[[i, j]])
        self._set_pose(self.pw_poses, e, R, T, scale=s)
        score = float(ci.mean())
        if i not in best_depth or score > best_depth[i][0]:
            best_depth[i] = (score, self.pred_i[i_j][..., 2], s)
    for k, (_, depth, s) in best_depth.items():
        self._set_depthmap(k, depth * s, force=True)
    if not self.faithful and self.n_imgs > 2:
        self.init_depthmaps = [d.clone() for d in self.get_depthmaps()]
    return self


@torch.no_grad()
def init_from_previous_result(self: "BasePCOptimizer", n_prev: int, niter_PnP: int = 10):
    """Window-wise continuation (optimizer.md 9.1): place the new frames relative to the preset previous ones.

    Frames ``[0, n_prev)`` carry preset (frozen) depth, pose and focal. For each new frame j (in order) the
    candidates are the edges (i, j) whose image i is already placed: image i's prediction is registered onto
    its placed points (conf_i weights), image j's points are mapped with the same similarity, and the candidates
    are averaged with per-pixel weights conf_j. (The original only scans the first half of the edge list, which
    gives the same candidates for a symmetrized graph built with i < j first; we accept any order.) The new
    frames' poses come from PnP with their focal; pair poses from registration; no scale normalisation.
    """
    pts3d: list[torch.Tensor | None] = [None] * self.n_imgs
    prev_pts = self.get_pts3d()
    for k in range(n_prev):
        pts3d[k] = prev_pts[k].detach()
    for j in range(n_prev, self.n_imgs):
        num, den = 0, 0
        for i, jj in self.edges:
            if jj != j or pts3d[i] is None:
                continue
            i_j = edge_str(i, j)
            s, R, T = rigid_points_registration(self.pred_i[i_j], pts3d[i], conf=self.conf_i[i_j])
            cand = geotrf(sRT_to_4x4(s, R, T, self.device), self.pred_j[i_j])
            w = self.conf_j[i_j][..., None]
            num = num + w * cand
            den = den + w
        if isinstance(den, int):
            # no edge (i, j) from a placed image: use an edge (j, k) with k placed
            for jj, k in self.edges:
                if jj != j or pts3d[k] is None:
                    continue
                j_k = edge_str(j, k)
                s, R, T = rigid_points_registration(self.pred_j[j_k], pts3d[k], conf=self.conf_j[j_k])
                pts3d[j] = geotrf(sRT_to_4x4(s, R, T, self.device), self.pred_i[j_k])
                break
            else:
                raise Monst3rInputError(f"frame {j} is not connected to any earlier frame by an image pair; "
                                        "use a scene graph that links consecutive frames")
        else:
            pts3d[j] = num / den
    focals = self.get_focals().detach()
    pps = self.get_principal_points().detach()
    new = list(range(n_prev, self.n_imgs))
    jobs = [dict(pts3d=pts3d[k], focal=float(focals[k]), msk=self.im_conf[k] > self.min_conf_thr,
                 device=self.device, pp=pps[k], niter_PnP=niter_PnP) for k in new]
    for k, res in zip(new, pnp_many(jobs)):
        c2w = torch.eye(4, device=self.device) if res is None else res[1]
        self._set_pose(self.im_poses, k, c2w)
        depth = geotrf(inv(c2w), pts3d[k])[..., 2]
        self._set_depthmap(k, depth)
    self._init_pw_poses_from_pts3d(pts3d)
    return self
