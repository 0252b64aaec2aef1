"""Setters and presets of ``PointCloudOptimizer`` (optimizer.md sections 4 and 10): write known or initial
values (poses, focals, principal points, depth maps, a previous window result) into the parameters, and freeze
them (``preset_*``). A mixin: reads the scene's parameters and options."""
from __future__ import annotations

import logging
import math

import numpy as np
import torch

from monst3r.cloud_opt.init_im_poses import estimate_focal_knowing_depth
from monst3r.errors import Monst3rInputError
from monst3r.utils.geometry import tum_to_pose_matrix

log = logging.getLogger(__name__)


class ScenePresets:
    """``preset_pose``, ``preset_focal``, ``preset_principal_point``, ``preset_intrinsics``, ``preset_depthmap``,
    the continuation of a previous result and the low-level setters ``_set_focal`` / ``_set_principal_point`` /
    ``_set_depthmap`` (``_set_pose`` is in the base class)."""

    @torch.no_grad()
    def _set_focal(self, idx: int, focal: float, force: bool = False) -> None:
        if not (self.im_focals.requires_grad or force):
            return
        focal = float(focal)
        if not (math.isfinite(focal) and focal > 0):
            # Robustness (not in the original, which crashes or propagates NaN here): an initial focal estimate
            # from degenerate point maps can be <= 0 or NaN; keep the current (default) value instead.
            log.warning("initial focal estimate %r is not a positive number; keeping the default focal", focal)
            return
        self.im_focals.data[idx] = self.focal_break * math.log(focal)

    @torch.no_grad()
    def _set_principal_point(self, idx: int, pp, force: bool = False) -> None:
        if not (self.im_pp.requires_grad or force):
            return
        H, W = self.imshapes[idx]
        pp = torch.as_tensor(pp, dtype=torch.float32, device=self.device).reshape(2)
        self.im_pp.data[idx] = (pp - torch.tensor((W / 2, H / 2), device=self.device)) / 10

    @torch.no_grad()
    def _set_depthmap(self, idx: int, depth, force: bool = False) -> None:
        """log(depth) with -inf / NaN -> 0 (as the original), raveled and padded into row ``idx``."""
        if not (self.im_depthmaps.requires_grad or force):
            return
        depth = torch.as_tensor(depth, dtype=torch.float32, device=self.device)
        flat = torch.nan_to_num(depth.log(), neginf=0).reshape(-1)
        self.im_depthmaps.data[idx] = 0
        self.im_depthmaps.data[idx, :flat.numel()] = flat

    def _check_all(self, values, what: str) -> list:
        values = list(values)
        if len(values) != self.n_imgs:
            raise Monst3rInputError(f"{what}: got {len(values)} values for {self.n_imgs} images; give one per image")
        return values

    @torch.no_grad()
    def preset_pose(self, known_poses, pose_msk=None, requires_grad: bool = False):
        """Set every image pose (4x4 c2w matrices or TUM 7-vectors x y z qw qx qy qz) and freeze them.

        The original always disables the pair-scale normalisation here (bug 14.11); by default we disable it
        only when more than one pose is known (its intent), ``faithful=True`` keeps the original.
        """
        if pose_msk is not None:
            msk = np.asarray(pose_msk)
            if msk.dtype == bool and not msk.all() or msk.dtype != bool and len(msk) != self.n_imgs:
                raise Monst3rInputError("preset_pose needs a pose for every image (pose_msk must select all)")
        poses = self._check_all(known_poses, "preset_pose")
        for k, pose in enumerate(poses):
            pose = torch.as_tensor(np.asarray(pose.detach().cpu() if isinstance(pose, torch.Tensor) else pose),
                                   dtype=torch.float32)
            if pose.numel() == 7:
                pose = torch.as_tensor(tum_to_pose_matrix(pose.numpy()), dtype=torch.float32)
            self._set_pose(self.im_poses, k, pose.reshape(4, 4).to(self.device), force=True)
        self.im_poses.requires_grad_(requires_grad)
        self._poses_preset = True
        self._root_mask.zero_()
        self.norm_pw_scale = False if self.faithful else (len(poses) <= 1)
        return self

    @torch.no_grad()
    def preset_focal(self, known_focals, msk=None, requires_grad: bool = False):
        """Set the focal lengths (one per image, or one value with ``shared_focal``) and freeze them."""
        if isinstance(known_focals, (int, float)):
            known_focals = [known_focals]
        focals = [float(torch.as_tensor(f).reshape(-1)[0]) for f in known_focals]
        if self.shared_focal:
            if len(set(round(f, 6) for f in focals)) > 1:
                raise Monst3rInputError("shared_focal=True keeps one focal for all images but different focals "
                                        "were given; build the aligner with shared_focal=False")
            self._set_focal(0, focals[0], force=True)
        else:
            if len(focals) == 1 and self.n_imgs > 1:
                focals = focals * self.n_imgs
            focals = self._check_all(focals, "preset_focal")
            for k, f in enumerate(focals):
                self._set_focal(k, f, force=True)
        self.im_focals.requires_grad_(requires_grad)
        return self

    @torch.no_grad()
    def preset_principal_point(self, known_pp, msk=None, requires_grad: bool = False):
        pps = self._check_all(known_pp, "preset_principal_point")
        for k, pp in enumerate(pps):
            self._set_principal_point(k, pp, force=True)
        self.im_pp.requires_grad_(requires_grad)
        return self

    @torch.no_grad()
    def preset_intrinsics(self, known_intrinsics, msk=None):
        """Fix intrinsics: one K ``[3, 3]`` for all images or one per image. Focal = mean(fx, fy); the principal
        points are set (and frozen) when ``optimize_pp`` (otherwise they stay (W/2, H/2), as the original)."""
        Ks = torch.as_tensor(np.asarray([np.asarray(k.detach().cpu() if isinstance(k, torch.Tensor) else k)
                                         for k in (known_intrinsics if not hasattr(known_intrinsics, 'shape')
                                                   or np.asarray(known_intrinsics).ndim == 3
                                                   else [known_intrinsics])]), dtype=torch.float32)
        if Ks.ndim != 3 or Ks.shape[-2:] != (3, 3):
            raise Monst3rInputError(f"intrinsics must be [3, 3] or [N, 3, 3], got {tuple(Ks.shape)}")
        if len(Ks) == 1:
            Ks = Ks.expand(self.n_imgs, 3, 3)
        focals = ((Ks[:, 0, 0] + Ks[:, 1, 1]) / 2).tolist()
        self.preset_focal(focals if not self.shared_focal else focals[:1] * len(focals))
        if self.optimize_pp:
            self.preset_principal_point(Ks[:, :2, 2])
        return self

    @torch.no_grad()
    def preset_depthmap(self, known_depthmaps, msk=None, requires_grad: bool = False):
        depths = self._check_all(known_depthmaps, "preset_depthmap")
        for k, d in enumerate(depths):
            d = torch.as_tensor(np.asarray(d.detach().cpu() if isinstance(d, torch.Tensor) else d))
            if tuple(d.shape) != self.imshapes[k]:
                raise Monst3rInputError(f"depth map {k} is {tuple(d.shape)}, image is {self.imshapes[k]}")
            self._set_depthmap(k, d, force=True)
        self.im_depthmaps.requires_grad_(requires_grad)
        return self

    @torch.no_grad()
    def _preset_prev_results(self, prev: dict) -> None:
        """First frames = frames of a previous result: preset (frozen in window mode) depth, pose, focal."""
        depths = prev["depths"]
        poses = prev["poses"]
        n_prev = len(poses)
        if n_prev >= self.n_imgs:
            raise Monst3rInputError(f"prev_video_results has {n_prev} frames but the scene only {self.n_imgs}; "
                                    "the previous frames must be followed by new ones")
        if len(depths) != n_prev:
            raise Monst3rInputError("prev_video_results: depths and poses have different lengths")
        K = torch.as_tensor(np.asarray(prev["intrinsics"]), dtype=torch.float32).reshape(-1, 3, 3)[0]
        focal = float((K[0, 0] + K[1, 1]) / 2)
        for k in range(n_prev):
            pose = np.asarray(poses[k].detach().cpu() if isinstance(poses[k], torch.Tensor) else poses[k],
                              dtype=np.float64)
            c2w = tum_to_pose_matrix(pose) if pose.size == 7 else pose.reshape(4, 4)
            self._set_pose(self.im_poses, k, torch.as_tensor(c2w, dtype=torch.float32, device=self.device),
                           force=True)
            d = torch.as_tensor(np.asarray(depths[k].detach().cpu() if isinstance(depths[k], torch.Tensor)
                                           else depths[k]))
            if tuple(d.shape) != self.imshapes[k]:
                raise Monst3rInputError(f"previous depth {k} is {tuple(d.shape)} but frame {k} is {self.imshapes[k]}")
            self._set_depthmap(k, d, force=True)
            if not self.shared_focal:
                self._set_focal(k, focal, force=True)
        if self.shared_focal:
            self._set_focal(0, focal, force=True)
        self.n_prev_frames = n_prev
        self.norm_pw_scale = False  # scale fixed by the previous frames

    def clean_prev_results(self):
        """Drop the re-used previous frames from the results (``result()`` and the save methods)."""
        self._prev_cleaned = True
        return self

    @torch.no_grad()
    def _estimate_missing_focals(self) -> None:
        """Weiszfeld focal from the best edge of every image whose focal is still trainable."""
        if not self.im_focals.requires_grad:
            return
        best: dict[int, tuple[float, int]] = {}
        for e, (i, j) in enumerate(self.edges):
            s = float(self._stacked_conf_i[e].mean() * self._stacked_conf_j[e].mean())
            if i not in best or s > best[i][0]:
                best[i] = (s, e)
        focals = []
        for k in range(self.n_imgs):
            e = best[k][1] if k in best else None
            if e is None:
                focals.append(None)
                continue
            pts = self._unravel_t(self._pred_i_t[e], k)[None]
            focals.append(float(estimate_focal_knowing_depth(pts)[0]))
        if self.shared_focal:
            fs = [f for f in focals if f is not None]
            self._set_focal(0, sum(fs) / len(fs))
        else:
            for k, f in enumerate(focals):
                if f is not None:
                    self._set_focal(k, f)
