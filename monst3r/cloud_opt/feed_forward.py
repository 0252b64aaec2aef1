"""Fully feed-forward (real-time) reconstruction without optimisation (optimizer.md 10.2).

The real-time demo runs the network on a one-reference graph (pairs (r, j) for every frame j, including (r, r),
not symmetrized) so that every frame's points come out in the reference camera r. The original only writes
those raw pointmaps; here they are turned into a full :class:`~monst3r.result.Reconstruction`: one shared focal
from the reference's own pointmap (Weiszfeld), each frame's pose by RANSAC PnP of its points (seen from r)
against its pixel grid, its depth = z of its points in its own camera.
"""
from __future__ import annotations

import logging

import numpy as np
import torch

from monst3r.cloud_opt.init_im_poses import estimate_focal_knowing_depth, pnp_poses
from monst3r.errors import Monst3rInputError
from monst3r.result import Reconstruction
from monst3r.utils.geometry import rigid_inverse

log = logging.getLogger(__name__)


def _item(x, b):
    v = x[b]
    if isinstance(v, torch.Tensor):
        while v.ndim > 3 and v.shape[0] == 1:
            v = v[0]
        return v.detach().float()
    return torch.as_tensor(np.asarray(v)).float()


@torch.no_grad()
def feed_forward_reconstruction(output: dict, ref_idx: int | None = None, min_conf_thr: float = 3.0,
                                niter_PnP: int = 100, device: str | torch.device = "cpu") -> Reconstruction:
    """Reconstruction from the inference output of a one-reference graph, without optimisation.

    output: the dict ``inference()`` returns; pairs whose view 1 is the reference (``ref_idx``, default: the
    most frequent view-1 index) are used. Frames never seen as view 2 of such a pair raise an error.
    """
    view1, view2, pred1, pred2 = (output[k] for k in ("view1", "view2", "pred1", "pred2"))
    idx1 = [int(i) for i in (view1["idx"].tolist() if isinstance(view1["idx"], torch.Tensor) else view1["idx"])]
    idx2 = [int(i) for i in (view2["idx"].tolist() if isinstance(view2["idx"], torch.Tensor) else view2["idx"])]
    if not idx1:
        raise Monst3rInputError("no pairs in the network output")
    r = max(set(idx1), key=idx1.count) if ref_idx is None else int(ref_idx)
    pairs = {j: b for b, (i, j) in enumerate(zip(idx1, idx2)) if i == r}
    frames = sorted(set(idx1) | set(idx2))
    missing = [k for k in frames if k != r and k not in pairs]
    if missing:
        raise Monst3rInputError(f"frames {missing} have no pair with the reference frame {r}; build the pairs "
                                f"with the 'oneref' scene graph (reference {r})")
    dev = torch.device(device)
    # the reference's own points: view 1 of its best pair (all view-1 points are in camera r)
    b_ref = pairs.get(r, next(iter(pairs.values())))
    ref_pts = _item(pred1["pts3d"], b_ref).to(dev)
    focal = float(estimate_focal_knowing_depth(ref_pts[None])[0])
    H, W = ref_pts.shape[:2]
    pts, confs, rgbs = {}, {}, {}
    for k in frames:
        if k == r and r not in pairs:
            pts[k], confs[k] = ref_pts, _item(pred1["conf"], b_ref).to(dev)
            img = _item(view1["img"], b_ref)
        else:
            b = pairs[k]
            pts[k] = _item(pred2["pts3d_in_other_view"], b).to(dev)
            confs[k] = _item(pred2["conf"], b).to(dev)
            img = _item(view2["img"], b)
        if img.shape[0] == 3:
            img = img.permute(1, 2, 0)
        rgbs[k] = (img * 0.5 + 0.5).clamp(0, 1).cpu().numpy()
        if tuple(pts[k].shape[:2]) != (H, W):
            raise Monst3rInputError("feed-forward reconstruction needs frames of one size")
    others = [k for k in frames if k != r]
    jobs = [dict(pts3d=pts[k], focal=focal, msk=confs[k] > min_conf_thr, device=dev, niter_PnP=niter_PnP)
            for k in others]
    c2w = {r: torch.eye(4, device=dev),
           **dict(zip(others, pnp_poses(jobs, others, dev, "PnP failed for frame %d; its pose is set to the "
                                        "reference pose", level=logging.WARNING)))}
    depths = []
    for k in frames:
        w2c = rigid_inverse(c2w[k])
        cam = pts[k].reshape(-1, 3) @ w2c[:3, :3].T + w2c[:3, 3]
        depths.append(cam[:, 2].reshape(H, W).cpu().numpy())
    K = np.array([[focal, 0, W / 2], [0, focal, H / 2], [0, 0, 1]], dtype=np.float32)
    conf_np = [confs[k].cpu().numpy() for k in frames]
    return Reconstruction(poses=np.stack([c2w[k].cpu().numpy() for k in frames]),
                          intrinsics=np.repeat(K[None], len(frames), axis=0), depths=depths, confs=conf_np,
                          init_confs=[c.copy() for c in conf_np],
                          dynamic_masks=[np.zeros((H, W), bool) for _ in frames],
                          rgb=[rgbs[k] for k in frames],
                          meta=dict(source="feed_forward", reference=r, sam2="off"))
