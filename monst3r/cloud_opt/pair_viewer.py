"""``PairViewer``: the two-image scene without optimisation (optimizer.md 10.1)."""
from __future__ import annotations

import torch

from monst3r.cloud_opt.base_opt import BasePCOptimizer
from monst3r.cloud_opt.edges import edge_str
from monst3r.cloud_opt.self_masks import pair_geometry
from monst3r.errors import Monst3rInputError
from monst3r.utils.geometry import depthmap_to_pts3d, geotrf, intrinsics_from_focal_pp


class PairViewer(BasePCOptimizer):
    """Exactly two images with both directed predictions (a symmetrized pair).

    The camera whose pair confidence mean(conf_i) * mean(conf_j) is larger is the world frame; the other is
    placed by RANSAC PnP (100 iterations) with its Weiszfeld focal; depths are the z of each image's points in
    its own camera. Nothing is trainable; ``forward`` returns NaN.
    """

    has_im_poses = True

    def __init__(self, *args, niter_PnP: int = 100, **kwargs):
        for k in ("shared_focal", "optimize_pp", "flow_loss_weight", "temporal_smoothing_weight",
                  "translation_weight", "flow_loss_start_epoch", "flow_loss_thre", "use_self_mask", "pxl_thre",
                  "sam2_mask_refine", "motion_mask_thre", "num_total_iter", "batchify", "window_wise",
                  "window_size", "window_overlap_ratio", "prev_video_results", "flows", "focal_break",
                  "depth_regularize_weight", "flow_loss_fn", "sintel_ckpt"):
            kwargs.pop(k, None)
        super().__init__(*args, **kwargs)
        if self.n_imgs != 2 or not self.is_symmetrized:
            raise Monst3rInputError(f"PairViewer needs exactly 2 images with both pairs (0, 1) and (1, 0); got "
                                    f"{self.n_imgs} images and pairs {self.edges}; use PointCloudOptimizer instead")
        pi, pj, ci, cj = self.pred_i, self.pred_j, self.conf_i, self.conf_j
        a, b = edge_str(0, 1), edge_str(1, 0)
        if self.imshapes[0] != self.imshapes[1]:
            raise Monst3rInputError("PairViewer needs two images of the same size")
        g = pair_geometry(pi[a][None], pj[a][None], ci[a][None], cj[a][None],
                          pi[b][None], pj[b][None], ci[b][None], cj[b][None],
                          min_conf_thr=self.min_conf_thr, niter_PnP=niter_PnP)
        self.register_buffer("_focals", g.focals[0].clone(), persistent=False)          # [2]
        self.register_buffer("_c2w", g.c2w[0].clone(), persistent=False)                 # [2, 4, 4]
        self.register_buffer("_depth", g.depths[0].clone(), persistent=False)            # [2, H, W]
        H, W = self.imshapes[0]
        self.register_buffer("_pp", torch.tensor([[W / 2, H / 2]] * 2, device=self.device), persistent=False)
        self.ref = int(g.ref[0])
        self.pw_poses.requires_grad_(False)
        self.pw_adaptors.requires_grad_(False)

    def get_focals(self) -> torch.Tensor:
        return self._focals.view(2, 1)

    def get_principal_points(self) -> torch.Tensor:
        return self._pp

    def get_im_poses(self) -> torch.Tensor:
        return self._c2w

    def get_depthmaps(self, raw: bool = False):
        return self._depth.reshape(2, -1) if raw else list(self._depth.unbind(0))

    def get_pts3d(self, raw: bool = False, raw_pts: bool = False, **kw):
        """World points per image; ``raw_pts``: the raw pointmaps of the reference edge."""
        if raw_pts:
            key = edge_str(self.ref, 1 - self.ref)
            pts = [self.pred_i[key], self.pred_j[key]]
            if self.ref == 1:
                pts = pts[::-1]
        else:
            K = intrinsics_from_focal_pp(self._focals, self._pp)
            pts = []
            for k in range(2):
                cam = depthmap_to_pts3d(self._depth[k][None], K[k:k + 1, 0, 0], self._pp[k:k + 1])[0]
                pts.append(geotrf(self._c2w[k], cam))
        return torch.stack(pts).reshape(2, -1, 3) if raw else pts

    def initialize(self, init, niter_PnP: int = 10):
        return self  # nothing to initialise: the geometry is fixed at construction

    def forward(self, epoch: int = 0):
        nan = torch.tensor(float("nan"), device=self.device)
        return nan, nan

    def loss_and_backward(self, epoch: int = 0):
        return self.forward(epoch)


__all__ = ["PairViewer"]
