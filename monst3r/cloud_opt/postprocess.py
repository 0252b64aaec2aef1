"""Post-processing of aligned scenes: occlusion-based confidence clean-up (optimizer.md 12.4)."""
from __future__ import annotations

from typing import Sequence

import torch

from monst3r.utils.geometry import depthmap_to_pts3d, geotrf, rigid_inverse


@torch.no_grad()
def clean_confidences(confs: Sequence[torch.Tensor], K: torch.Tensor, c2w: torch.Tensor,
                      depths: Sequence[torch.Tensor], tol: float = 0.001, bad_conf: float = 0.0
                      ) -> list[torch.Tensor]:
    """Return cleaned copies of the raw confidence maps (the original's ``clean_pointcloud``).

    confs: N maps ``[H, W]``; K ``[N, 3, 3]``; c2w ``[N, 4, 4]``; depths: N maps ``[H, W]``.
    For i in order and every j != i (vectorised over j, which is equivalent to the original's inner loop):
    project image i's world points into camera j, pixel = round(K (x/z, y/z)) (half to even); a point is bad
    when it is in front of j, inside j's image, closer than (1 - tol) depth_j at that pixel, and less confident
    than j there (using the running, already cleaned maps); its confidence becomes min(conf, bad_conf).
    """
    assert 0 <= tol < 1
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
