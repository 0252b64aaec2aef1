"""Post-processing of aligned scenes: occlusion-based confidence clean-up (optimizer.md 12.4)."""
from __future__ import annotations

from typing import Sequence

import torch

from monst3r.utils.geometry import depthmap_to_pts3d, geotrf, rigid_inverse


@torch.no_grad()
def clean_confidences(confs: Sequence[torch.Tensor], K: torch.Tensor, c2w: torch.Tensor,
                      depths: Sequence[torch.Tensor], tol: float = 0.001, bad_conf: float = 0.0,
                      chunk_pixels: int = 1 << 22) -> list[torch.Tensor]:
    """Return cleaned copies of the raw confidence maps (the original's ``clean_pointcloud``).

    confs: N maps ``[H, W]``; K ``[N, 3, 3]``; c2w ``[N, 4, 4]``; depths: N maps ``[H, W]``.
    For i in order and every j != i: project image i's world points into camera j, pixel = round(K (x/z, y/z))
    (half to even); a point is bad when it is in front of j, inside j's image, closer than (1 - tol) depth_j at
    that pixel, and less confident than j there (using the running, already cleaned maps); its confidence
    becomes min(conf, bad_conf).

    Vectorised over j (in chunks of about ``chunk_pixels`` projected points), with no data-dependent indexing
    (no host synchronisation): only the loop over i remains, which the running maps make sequential. Equal
    to the original's double loop, which updates conf_i inside the j loop: a pixel's update is idempotent and
    only lowers its own value, so the union over j of the bad pixels, computed with the value before the loop
    over j, is the same.
    """
    assert 0 <= tol < 1
    N = len(confs)
    if N == 0:
        return []
    shapes = [tuple(c.shape) for c in confs]
    same = len(set(shapes)) == 1
    if not same:
        return clean_confidences_loop(confs, K, c2w, depths, tol, bad_conf)
    H, W = shapes[0]
    dev = confs[0].device
    res = torch.stack([c.detach() for c in confs]).clone().reshape(N, H * W)  # running maps
    dep = torch.stack([d.detach().float() for d in depths]).reshape(N, H * W)
    K = K.float()
    c2w = c2w.float()
    w2c = rigid_inverse(c2w)
    cam = depthmap_to_pts3d(dep.view(N, H, W), K[:, 0, 0], K[:, :2, 2])  # [N, H, W, 3]
    pts_world = geotrf(c2w, cam).reshape(N, H * W, 3).transpose(1, 2).contiguous()  # [N, 3, HW]
    step = max(1, chunk_pixels // max(H * W, 1))
    ar = torch.arange(N, device=dev)
    others_all = ar[None, :].expand(N, N)[ar[:, None] != ar[None, :]].view(N, N - 1)  # row i: every j != i
    for i in range(N):
        others = others_all[i]
        conf_i = res[i]
        bad_any = torch.zeros(H * W, dtype=torch.bool, device=dev)
        for a in range(0, len(others), step):
            js = others[a:a + step]
            J = len(js)
            Tj = w2c.index_select(0, js)
            proj = torch.baddbmm(Tj[:, :3, 3:], Tj[:, :3, :3], pts_world[i].expand(J, 3, H * W))  # [J, 3, HW]
            q = torch.bmm(K.index_select(0, js), proj)
            z = proj[:, 2]
            # pixel = round(K p / z) (half to even), compared as floats (exact integers; NaN / inf -> outside)
            u = (q[:, 0] / q[:, 2]).round_()
            v = (q[:, 1] / q[:, 2]).round_()
            vis = (z > 0) & (u >= 0) & (u < W) & (v >= 0) & (v < H)
            if H * W < 1 << 24:  # exact in float32
                lin = torch.where(vis, v * W + u, torch.zeros_like(u)).long()  # [J, HW] pixel of j (0: not visible)
            else:
                lin = torch.where(vis, v.double() * W + u.double(), torch.zeros_like(u, dtype=torch.float64)).long()
            d_j = dep.index_select(0, js).gather(1, lin)
            c_j = res.index_select(0, js).gather(1, lin)
            bad = vis & (z < (1 - tol) * d_j) & (conf_i[None] < c_j)
            bad_any |= bad.any(dim=0)
        res[i] = torch.where(bad_any, conf_i.clamp(max=bad_conf), conf_i)
    return list(res.view(N, H, W).unbind(0))


def clean_confidences_loop(confs, K, c2w, depths, tol, bad_conf) -> list[torch.Tensor]:
    """Reference double loop of :func:`clean_confidences` (used for images of different sizes; the tests compare
    the batched path with it)."""
    res = [c.clone() for c in confs]
    N = len(res)
    w2c = rigid_inverse(c2w.float())
    pts_world = []
    for k in range(N):
        cam = depthmap_to_pts3d(depths[k][None].float(), K[k:k + 1, 0, 0], K[k:k + 1, :2, 2])[0]
        pts_world.append(geotrf(c2w[k].float(), cam))
    for i in range(N):
        pts = pts_world[i]
        bad_any = torch.zeros_like(res[i], dtype=torch.bool)
        for j in range(N):
            if i == j:
                continue
            proj = geotrf(w2c[j], pts)
            z = proj[..., 2]
            uv = geotrf(K[j].float(), proj, norm=1, ncol=2).round().long()
            u, v = uv[..., 0], uv[..., 1]
            H, W = res[j].shape
            vis = (z > 0) & (u >= 0) & (u < W) & (v >= 0) & (v < H)
            uu, vv = u[vis], v[vis]
            bad = (z[vis] < (1 - tol) * depths[j][vv, uu]) & (res[i][vis] < res[j][vv, uu])
            msk = vis.clone()
            msk[vis] = bad
            bad_any |= msk
        res[i][bad_any] = res[i][bad_any].clamp(max=bad_conf)
    return res
