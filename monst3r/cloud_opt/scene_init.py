"""Initialisation of a scene's parameters (optimizer.md section 8): the values are computed by the functions of
``init_im_poses.py`` (which know nothing of the optimizer) and applied here through the scene's setters.

A mixin of ``BasePCOptimizer``: ``initialize(init)`` with init = 'mst' / 'msp' (minimum spanning tree),
'known_poses' or None; ``PointCloudOptimizer`` adds the continuation of a previous window result.
"""
from __future__ import annotations

from typing import Sequence

import torch

from monst3r.cloud_opt import init_im_poses as ini
from monst3r.errors import Monst3rInputError


class SceneInit:
    """Applies the initial values computed by ``init_im_poses`` (pair poses, image poses, depths, focals)."""

    def initialize(self, init: str | None, niter_PnP: int = 10):
        if init is None:
            return self
        if init in ("msp", "mst"):
            return self._init_minimum_spanning_tree(niter_PnP=niter_PnP)
        if init == "known_poses":
            return self._init_from_known_poses(niter_PnP=niter_PnP)
        raise ValueError(f"bad value for init: {init!r}; use 'mst', 'known_poses' or None")

    @torch.no_grad()
    def _apply_pair_poses(self, pair_poses: Sequence[tuple]) -> None:
        """(edge, R ``[3, 3]``, T ``[3]``, scale) -> ``pw_poses`` rows."""
        for e, R, T, s in pair_poses:
            self._set_pose(self.pw_poses, e, R, T, scale=s)

    @torch.no_grad()
    def _init_pw_poses_from_pts3d(self, pts3d: Sequence[torch.Tensor]) -> None:
        """Pair pose of every edge = similarity registering its view-1 prediction onto image i's world points."""
        self._apply_pair_poses(ini.pair_poses_from_pts3d(self.edges, pts3d, self.same_size, self._stacked_pred_i,
                                                         self._stacked_conf_i, self.pred_i, self.conf_i))

    @torch.no_grad()
    def _init_minimum_spanning_tree(self, niter_PnP: int = 10, return_traversal: bool = False):
        """Initialise all parameters from the MST placement (optimizer.md 8.1 + :meth:`_init_from_pts3d`)."""
        pts3d, _, im_focals, im_poses, trav = ini.minimum_spanning_tree(
            self.imshapes, self.edges, self.pred_i, self.pred_j, self.conf_i, self.conf_j, self.im_conf,
            self.min_conf_thr, self.device, has_im_poses=self.has_im_poses, niter_PnP=niter_PnP,
            faithful=self.faithful, return_traversal=True)
        self._init_from_pts3d(pts3d, im_focals, im_poses)
        return trav if return_traversal else self

    @torch.no_grad()
    def _init_from_pts3d(self, pts3d: list[torch.Tensor], im_focals, im_poses: torch.Tensor):
        """Set pair poses, depth maps, image poses and focals from per-image world pointmaps (optimizer.md 8.1 step 7)."""
        nkp, known_msk, known_poses = self.get_known_poses()
        pts3d, im_poses = ini.align_to_known_poses(pts3d, im_poses, nkp, known_msk, known_poses)
        self._init_pw_poses_from_pts3d(pts3d)
        if not self.has_im_poses:
            return self
        depths, im_poses = ini.depths_from_pts3d(pts3d, im_poses, float(self.get_pw_norm_scale_factor()))
        for i in range(self.n_imgs):
            self._set_depthmap(i, depths[i])
            self._set_pose(self.im_poses, i, im_poses[i])
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
    def _init_from_known_poses(self, niter_PnP: int = 10):
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
        pair_poses, depths = ini.known_poses_pair_init(
            self.edges, self.pred_i, self.pred_j, self.conf_i, self.conf_j, known_poses, self.get_focals().detach(),
            self.get_principal_points().detach(), self.device, self.min_conf_thr, niter_PnP, self.faithful)
        self._apply_pair_poses(pair_poses)
        for k, depth in depths.items():
            self._set_depthmap(k, depth, force=True)
        if not self.faithful and self.n_imgs > 2:
            self.init_depthmaps = [d.clone() for d in self.get_depthmaps()]
        return self

    @torch.no_grad()
    def _init_from_previous_result(self, n_prev: int, niter_PnP: int = 10):
        """Window-wise continuation (optimizer.md 9.1): place the new frames relative to the preset previous ones
        (``init_im_poses.place_new_frames``); their poses come from PnP with their focal, pair poses from
        registration; no scale normalisation."""
        prev_pts = self.get_pts3d()
        pts3d = [prev_pts[k].detach() if k < n_prev else None for k in range(self.n_imgs)]
        pts3d = ini.place_new_frames(self.edges, pts3d, self.pred_i, self.pred_j, self.conf_i, self.conf_j,
                                     self.device)
        new = list(range(n_prev, self.n_imgs))
        for k, c2w, depth in ini.poses_of_new_frames(pts3d, new, self.get_focals().detach(),
                                                     self.get_principal_points().detach(), self.im_conf,
                                                     self.min_conf_thr, self.device, niter_PnP):
            self._set_pose(self.im_poses, k, c2w)
            self._set_depthmap(k, depth)
        self._init_pw_poses_from_pts3d(pts3d)
        return self
