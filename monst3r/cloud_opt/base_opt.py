"""State shared by all global-alignment modes (optimizer.md section 3) and the optimisation loop (section 9).

Data layout: per-edge predictions and confidences are stacked once into padded buffers (``[E, maxHW, ...]``,
each image raveled row-major and zero padded to the largest area), so that the whole scene moves with
``.to(device)`` and the loss is computed for all pairs at once. Per-edge / per-image views keyed like the
original (``pred_i["i_j"]``, ``im_conf[k]``) are exposed as views into these buffers.
"""
from __future__ import annotations

import contextlib
import logging
import math
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import roma
import torch
import torch.nn as nn
from tqdm.auto import tqdm

from monst3r.cloud_opt import init_im_poses
from monst3r.cloud_opt.commons import (ALL_DISTS, check_edges, edge_str, get_conf_trf, get_lr, is_symmetrized,
                                       nonfinite_rows, ravel_pad_stack, stack_rows)
from monst3r.cloud_opt.kernels import quat_param_to_rotmat_fast, signed_expm1_fn
from monst3r.errors import Monst3rInputError
from monst3r.utils.geometry import c2w_to_tumpose, intrinsics_from_focal_pp, signed_log1p

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------------------
# input parsing
# ----------------------------------------------------------------------------------------------------------
def _to_tensor(x, dtype=None) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x if dtype is None else x.to(dtype)
    return torch.as_tensor(np.asarray(x), dtype=dtype)


def _per_edge(x, E: int, name: str, dtype=None, ndim: int | None = None) -> list[torch.Tensor]:
    """A stacked ``[E, ...]`` tensor/array or a list of E items -> list of E tensors (leading 1-dims of items
    beyond ``ndim`` squeezed, e.g. ``[1, H, W, 3]`` -> ``[H, W, 3]``)."""
    if x is None:
        raise Monst3rInputError(f"missing {name} in the network output; pass the dict returned by inference()")
    if isinstance(x, (list, tuple)):
        items = [_to_tensor(v, dtype) for v in x]
    else:
        t = _to_tensor(x, dtype)
        items = list(t.unbind(0)) if t.ndim > 0 else []
    if len(items) != E:
        raise Monst3rInputError(f"{name} has {len(items)} entries but there are {E} image pairs; "
                                "view1, view2, pred1 and pred2 must describe the same pairs")
    if ndim is not None:
        out = []
        for v in items:
            while v.ndim > ndim and v.shape[0] == 1:
                v = v[0]
            out.append(v)
        items = out
    return items


def _idx_list(idx) -> list[int]:
    if isinstance(idx, torch.Tensor):
        return [int(v) for v in idx.reshape(-1).tolist()]
    return [int(v) for v in np.asarray(idx).reshape(-1).tolist()]


class BasePCOptimizer(nn.Module):
    """Common state of the global aligners: pairwise predictions, confidences, pair poses.

    Args (defaults of the original): ``dist`` 'l1' (Euclidean distance) or 'l2'; ``conf`` transform of the
    confidences into loss weights ('log'); ``min_conf_thr`` 3 (raw confidence threshold for masks and PnP);
    ``thr_for_init_conf``: threshold the initial instead of the current confidences in ``get_masks``;
    ``base_scale`` 0.5 (geometric mean of the pair scales); ``allow_pw_adaptors``; ``pw_break`` 20;
    ``rand_pose`` initial pose sampler; ``verbose``: progress bars.
    Additions: ``device`` (everything is built there), ``faithful`` (reproduce the original's documented
    bugs, optimizer.md section 14; default False = corrected behaviour, see each use),
    ``dynamic_masks`` (``[N, H, W]`` bool, user-supplied moving-object masks that replace the views' masks).
    """

    has_im_poses = False

    def __init__(self, view1: dict, view2: dict, pred1: dict, pred2: dict, *, dist: str = "l1", conf: str = "log",
                 min_conf_thr: float = 3, thr_for_init_conf: bool = False, base_scale: float = 0.5,
                 allow_pw_adaptors: bool = False, pw_break: float = 20, rand_pose=torch.randn,
                 empty_cache: bool = False, verbose: bool = True, faithful: bool = False,
                 device: str | torch.device | None = None, dynamic_masks=None, **unused: Any):
        super().__init__()
        if unused:
            log.debug("ignored global-aligner options: %s", sorted(unused))
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.verbose = verbose
        self.faithful = bool(faithful)
        self.empty_cache = empty_cache
        self.min_conf_thr = min_conf_thr
        self.thr_for_init_conf = thr_for_init_conf
        self.conf_trf = get_conf_trf(conf)
        if dist not in ALL_DISTS:
            raise ValueError(f"bad dist {dist!r}; use one of {sorted(ALL_DISTS)}")
        self.dist = ALL_DISTS[dist]
        self.base_scale = base_scale
        self.pw_break = pw_break
        self.norm_pw_scale = True
        self.rand_pose = rand_pose
        self._root_idx: int | None = None
        self._cache: dict[str, Any] = {}
        self.history: dict[str, list] = dict(loss=[], flow=[], lr=[])
        self.timings: dict[str, float] = {}

        self._parse(view1, view2, pred1, pred2, dynamic_masks)

        E = self.n_edges
        self.pw_poses = nn.Parameter(rand_pose((E, 1 + self.POSE_DIM)).float().to(self.device))
        self.pw_adaptors = nn.Parameter(torch.zeros((E, 2), device=self.device))
        self.pw_adaptors.requires_grad_(allow_pw_adaptors)
        self.has_adaptors = allow_pw_adaptors

    POSE_DIM = 7

    # ------------------------------------------------------------------------------------------------------
    # parsing and validation of the network output
    # ------------------------------------------------------------------------------------------------------
    def _parse(self, view1, view2, pred1, pred2, dynamic_masks) -> None:
        for name, d in (("view1", view1), ("view2", view2), ("pred1", pred1), ("pred2", pred2)):
            if not isinstance(d, dict):
                raise Monst3rInputError(f"'{name}' must be a dict as returned by inference(), got {type(d).__name__}")
        if "idx" not in view1 or "idx" not in view2:
            raise Monst3rInputError("views need an 'idx' entry (image indices); use the output of inference()")
        idx1, idx2 = _idx_list(view1["idx"]), _idx_list(view2["idx"])
        if len(idx1) != len(idx2):
            raise Monst3rInputError(f"view1 has {len(idx1)} pairs and view2 {len(idx2)}; they must match")
        view1["idx"], view2["idx"] = idx1, idx2  # as the original: converted to lists in place
        self.edges = [(i, j) for i, j in zip(idx1, idx2)]
        E = len(self.edges)
        self.n_imgs = check_edges(self.edges)
        if self.n_imgs < 2:
            raise Monst3rInputError(f"global alignment needs at least 2 images, got {self.n_imgs}")
        self.is_symmetrized = is_symmetrized(self.edges)

        # per-edge views of the inputs (no copies; converted to float32 when stacked below)
        pts_i = _per_edge(pred1.get("pts3d"), E, "pred1['pts3d']", None, 3)
        pts_j = _per_edge(pred2.get("pts3d_in_other_view"), E, "pred2['pts3d_in_other_view']", None, 3)
        conf_i = _per_edge(pred1.get("conf"), E, "pred1['conf']", None, 2)
        conf_j = _per_edge(pred2.get("conf"), E, "pred2['conf']", None, 2)

        # image shapes, consistent across edges
        shapes: list[tuple[int, int] | None] = [None] * self.n_imgs

        def set_shape(k, shp, what):
            if shapes[k] is None:
                shapes[k] = shp
            elif shapes[k] != shp:
                raise Monst3rInputError(f"image {k} has shape {shapes[k]} in one pair and {shp} in {what}; "
                                        "every prediction of an image must have the same size")
        for e, (i, j) in enumerate(self.edges):
            for pts, cf, k, nm in ((pts_i[e], conf_i[e], i, "pred1"), (pts_j[e], conf_j[e], j, "pred2")):
                if pts.ndim != 3 or pts.shape[-1] != 3:
                    raise Monst3rInputError(f"{nm} pointmap of pair {e} must be [H, W, 3], got {tuple(pts.shape)}")
                if tuple(cf.shape) != tuple(pts.shape[:2]):
                    raise Monst3rInputError(f"{nm} confidence of pair {e} has shape {tuple(cf.shape)} but its "
                                            f"pointmap is {tuple(pts.shape[:2])}; they must match")
                set_shape(k, tuple(pts.shape[:2]), f"pair {e}")
        self.imshapes: list[tuple[int, int]] = [tuple(s) for s in shapes]  # type: ignore[misc]
        self.max_area = max(h * w for h, w in self.imshapes)
        self.same_size = len(set(self.imshapes)) == 1
        dev = self.device
        ei = [i for i, _ in self.edges]
        ej = [j for _, j in self.edges]
        self.register_buffer("_ei", torch.tensor(ei, dtype=torch.long, device=dev), persistent=False)
        self.register_buffer("_ej", torch.tensor(ej, dtype=torch.long, device=dev), persistent=False)
        A = self.max_area
        # channels-first [2E, 3, maxHW] (view-1 predictions of all pairs, then view-2 ones): the layout the fused
        # loss kernel wants, one call for both views. This buffer and the confidences are the only per-pair copies
        # of the predictions (every per-edge accessor below is a view); built chunk by chunk on the device.
        self.register_buffer("_pred_t", stack_rows(pts_i + pts_j, A, 3, dev), persistent=False)
        self.register_buffer("_stacked_conf", stack_rows(conf_i + conf_j, A, 0, dev), persistent=False)
        del pts_i, pts_j, conf_i, conf_j
        bad = nonfinite_rows(self._pred_t) | nonfinite_rows(self._stacked_conf)
        if bool(bad.any()):
            r = int(torch.nonzero(bad.view(2, E).T.reshape(-1))[0])  # first pair, view 1 before view 2
            raise Monst3rInputError(f"{('pred1', 'pred2')[r % 2]} of pair {r // 2} contains NaN or inf values; "
                                    "check the network input")
        areas = torch.tensor([h * w for h, w in self.imshapes], dtype=torch.float32)
        self.total_area_i = float(areas[ei].sum())
        self.total_area_j = float(areas[ej].sum())
        self.register_buffer("_edge_area_i", areas[ei].to(dev), persistent=False)
        self.register_buffer("_edge_area_j", areas[ej].to(dev), persistent=False)
        # valid-pixel mask of the padded layout [N, maxHW]
        valid = torch.zeros(self.n_imgs, A, dtype=torch.bool)
        for k, (h, w) in enumerate(self.imshapes):
            valid[k, :h * w] = True
        self.register_buffer("_valid", valid.to(dev), persistent=False)

        # per-image max confidence over every edge it appears in
        im_conf = torch.zeros(self.n_imgs, A, device=dev)
        im_conf.scatter_reduce_(0, self._ei[:, None].expand(-1, A), self._stacked_conf_i, reduce="amax")
        im_conf.scatter_reduce_(0, self._ej[:, None].expand(-1, A), self._stacked_conf_j, reduce="amax")
        self.register_buffer("_im_conf", im_conf, persistent=False)
        self.register_buffer("_init_conf", im_conf.clone(), persistent=False)

        # images, masks, poses, paths from the views (last edge mentioning an image wins)
        imgs: list[torch.Tensor | None] = [None] * self.n_imgs
        dyn: list[torch.Tensor | None] = [None] * self.n_imgs
        cams: list[torch.Tensor | None] = [None] * self.n_imgs
        paths: list[str | None] = [None] * self.n_imgs
        for view, idxs in ((view1, idx1), (view2, idx2)):
            im = view.get("img")
            im_list = _per_edge(im, E, "view['img']", None, 3) if im is not None else None
            dm = view.get("dynamic_mask")
            dm_list = _per_edge(dm, E, "view['dynamic_mask']", None, 2) if dm is not None else None
            cp = view.get("camera_pose")
            cp_list = _per_edge(cp, E, "view['camera_pose']", torch.float32, 2) if cp is not None else None
            inst = view.get("instance")
            for e, k in enumerate(idxs):
                if im_list is not None:
                    t = im_list[e]
                    if t.ndim == 3 and t.shape[0] == 3:
                        t = t.permute(1, 2, 0)
                    if tuple(t.shape[:2]) != self.imshapes[k]:
                        raise Monst3rInputError(f"image {k} is {tuple(t.shape[:2])} but its predictions are "
                                                f"{self.imshapes[k]}; images and predictions must match")
                    imgs[k] = t  # converted below, once per image (the last edge mentioning it wins)
                if dm_list is not None:
                    m = dm_list[e]
                    dyn[k] = m.bool() if tuple(m.shape) == self.imshapes[k] else None
                if cp_list is not None:
                    cams[k] = cp_list[e].reshape(4, 4)
                if inst is not None and e < len(inst):
                    paths[k] = str(inst[e])
        self.img_pathes = paths
        imgs = [None if im is None else (im.float() * 0.5 + 0.5).clamp(0, 1) for im in imgs]
        self.register_buffer("_imgs", ravel_pad_stack(
            [im if im is not None else torch.zeros(*s, 3) for im, s in zip(imgs, self.imshapes)], A, 1).to(dev),
            persistent=False)
        self.has_images = all(im is not None for im in imgs)
        self.has_view_masks = any(m is not None for m in dyn)
        view_masks = [m if m is not None else torch.zeros(s, dtype=torch.bool) for m, s in zip(dyn, self.imshapes)]
        if dynamic_masks is not None:
            view_masks = self._check_user_masks(dynamic_masks)
            self.has_view_masks = True
            self.mask_source = "user"
        else:
            self.mask_source = "views" if self.has_view_masks else "none"
        self.register_buffer("_dyn", ravel_pad_stack([m.float() for m in view_masks], A).bool().to(dev),
                             persistent=False)
        self.user_dynamic_masks = dynamic_masks is not None
        self.camera_poses = torch.stack(cams).to(dev) if all(c is not None for c in cams) else None

    def _check_user_masks(self, masks) -> list[torch.Tensor]:
        ms = [_to_tensor(m).bool() for m in (masks if isinstance(masks, (list, tuple)) else _to_tensor(masks))]
        if len(ms) != self.n_imgs:
            raise Monst3rInputError(f"dynamic_masks has {len(ms)} masks for {self.n_imgs} images; give one per image")
        for k, m in enumerate(ms):
            if tuple(m.shape) != self.imshapes[k]:
                raise Monst3rInputError(f"dynamic_masks[{k}] is {tuple(m.shape)} but image {k} is {self.imshapes[k]}")
        return ms

    # ------------------------------------------------------------------------------------------------------
    # views keyed like the original
    # ------------------------------------------------------------------------------------------------------
    def _apply(self, fn, *args, **kwargs):
        out = super()._apply(fn, *args, **kwargs)
        self._cache = {}
        if hasattr(self, "_ei"):
            self.device = self._ei.device
        return out

    def _unravel(self, flat: torch.Tensor, k: int) -> torch.Tensor:
        """``[maxHW, ...]`` padded row -> ``[H, W, ...]`` view of image k."""
        h, w = self.imshapes[k]
        return flat[:h * w].unflatten(0, (h, w))

    def _unravel_t(self, flat_t: torch.Tensor, k: int) -> torch.Tensor:
        """Channels-first ``[C, maxHW]`` padded row -> ``[H, W, C]`` view of image k."""
        return self._unravel(flat_t.transpose(0, 1), k)

    @property
    def _pred_i_t(self) -> torch.Tensor:
        """``[E, 3, maxHW]`` view-1 points, channels first (view of the combined buffer)."""
        return self._pred_t[:self.n_edges]

    @property
    def _pred_j_t(self) -> torch.Tensor:
        return self._pred_t[self.n_edges:]

    @property
    def _stacked_conf_i(self) -> torch.Tensor:
        """``[E, maxHW]`` raw view-1 confidences (zero padded)."""
        return self._stacked_conf[:self.n_edges]

    @property
    def _stacked_conf_j(self) -> torch.Tensor:
        return self._stacked_conf[self.n_edges:]

    @property
    def _stacked_pred_i(self) -> torch.Tensor:
        """``[E, maxHW, 3]`` view-1 points (a strided view of the channels-first buffer)."""
        return self._pred_i_t.transpose(1, 2)

    @property
    def _stacked_pred_j(self) -> torch.Tensor:
        return self._pred_j_t.transpose(1, 2)

    def _edge_dict(self, name: str, stacked: torch.Tensor, side: int, channels_first: bool = False
                   ) -> dict[str, torch.Tensor]:
        key = f"dict_{name}"
        if key not in self._cache:
            unravel = self._unravel_t if channels_first else self._unravel
            self._cache[key] = {edge_str(i, j): unravel(stacked[e], (i, j)[side])
                                for e, (i, j) in enumerate(self.edges)}
        return self._cache[key]

    @property
    def pred_i(self) -> dict[str, torch.Tensor]:
        """``{"i_j": [H, W, 3]}`` view-1 points (camera-i frame)."""
        return self._edge_dict("pred_i", self._pred_i_t, 0, channels_first=True)

    @property
    def pred_j(self) -> dict[str, torch.Tensor]:
        """``{"i_j": [H, W, 3]}`` view-2 points in camera i."""
        return self._edge_dict("pred_j", self._pred_j_t, 1, channels_first=True)

    @property
    def conf_i(self) -> dict[str, torch.Tensor]:
        return self._edge_dict("conf_i", self._stacked_conf_i, 0)

    @property
    def conf_j(self) -> dict[str, torch.Tensor]:
        return self._edge_dict("conf_j", self._stacked_conf_j, 1)

    @property
    def n_edges(self) -> int:
        return len(self.edges)

    @property
    def im_conf(self) -> list[torch.Tensor]:
        """Per-image ``[H, W]`` max raw confidence (views: in-place edits change the scene)."""
        return [self._unravel(self._im_conf[k], k) for k in range(self.n_imgs)]

    @property
    def init_conf_maps(self) -> list[torch.Tensor]:
        return [self._unravel(self._init_conf[k], k) for k in range(self.n_imgs)]

    @property
    def imgs(self) -> list[torch.Tensor]:
        """Per-image ``[H, W, 3]`` RGB in [0, 1]."""
        return [self._unravel(self._imgs[k], k) for k in range(self.n_imgs)]

    @property
    def dynamic_masks(self) -> list[torch.Tensor]:
        """Per-image ``[H, W]`` bool moving-object masks (those the flow loss ignores)."""
        return [self._unravel(self._dyn[k], k) for k in range(self.n_imgs)]

    @property
    def str_edges(self) -> list[str]:
        return [edge_str(i, j) for i, j in self.edges]

    # ------------------------------------------------------------------------------------------------------
    # pair poses
    # ------------------------------------------------------------------------------------------------------
    def _decode_poses(self, poses: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[n, 7|8]`` parameters -> (R ``[n, 3, 3]``, T ``[n, 3]``): normalised XYZW quaternion, signed_expm1.

        Faithful: the translation derivative vanishes at exactly 0, as the original's sign(x)(exp|x|-1) (bug 14.1:
        any coordinate stored as 0 is frozen); default: correct derivative exp|x| everywhere (the root camera
        translation, the gauge anchor, is then frozen explicitly by the optimizer).
        """
        return quat_param_to_rotmat_fast(poses[:, :4]), signed_expm1_fn(poses[:, 4:7], self.faithful)

    def _get_poses(self, poses: torch.Tensor) -> torch.Tensor:
        """``[n, 7|8]`` parameters (XYZW quaternion, signed-log translation) -> ``[n, 4, 4]``."""
        R, T = self._decode_poses(poses)
        top = torch.cat((R, T[:, :, None]), dim=2)
        bottom = torch.tensor([0, 0, 0, 1], device=poses.device, dtype=poses.dtype).expand(len(poses), 1, 4)
        return torch.cat((top, bottom), dim=1)

    @torch.no_grad()
    def _set_pose(self, poses: torch.Tensor, idx: int, R: torch.Tensor, T: torch.Tensor | None = None,
                  scale: float | torch.Tensor | None = None, force: bool = False) -> None:
        """Write a pose (R ``[3, 3]`` + T ``[3]``, or a 4x4 in R) into row ``idx``; only if trainable or ``force``."""
        if not (poses.requires_grad or force):
            return
        R = torch.as_tensor(R, device=poses.device, dtype=torch.float32)
        if R.shape[-2:] == (4, 4):
            assert T is None
            T = R[:3, 3]
            R = R[:3, :3]
        poses.data[idx, 0:4] = roma.rotmat_to_unitquat(R)
        if T is not None:
            T = torch.as_tensor(T, device=poses.device, dtype=torch.float32).reshape(3)
            poses.data[idx, 4:7] = signed_log1p(T / (scale if scale is not None else 1))
        if scale is not None:
            assert poses.shape[-1] == 8, "only pair poses carry a scale"
            poses.data[idx, -1] = torch.log(torch.as_tensor(scale, dtype=torch.float32))

    def get_pw_norm_scale_factor(self) -> torch.Tensor | float:
        """base_scale / geometric mean of the raw pair scales (1 when normalisation is off)."""
        if self.norm_pw_scale:
            return (math.log(self.base_scale) - self.pw_poses[:, -1].mean()).exp()
        return 1

    def get_pw_scale(self) -> torch.Tensor:
        """``[E]`` pair scales."""
        return self.pw_poses[:, -1].exp() * self.get_pw_norm_scale_factor()

    def get_pw_poses(self) -> torch.Tensor:
        """``[E, 4, 4]`` similarity "camera i of the pair -> world" (rotation and translation times the scale)."""
        RT = self._get_poses(self.pw_poses)
        scaled = RT.clone()
        scaled[:, :3, :] = RT[:, :3, :] * self.get_pw_scale().view(-1, 1, 1)
        return scaled

    def get_adaptors(self) -> torch.Tensor:
        """``[E, 3]`` per-axis multiplicative scales of the pair predictions (ones unless adaptors are on)."""
        adapt = self.pw_adaptors
        adapt = torch.cat((adapt[:, 0:1], adapt), dim=-1)
        if self.norm_pw_scale:
            adapt = adapt - adapt.mean(dim=1, keepdim=True)
        return (adapt / self.pw_break).exp()

    @torch.no_grad()
    def _init_pw_poses_from_pts3d(self, pts3d: Sequence[torch.Tensor]) -> None:
        """Pair pose of every edge = similarity registering its view-1 prediction onto image i's world points."""
        pi = self._stacked_pred_i
        ci = self._stacked_conf_i
        if self.same_size:
            ei = self._ei.tolist()
            for c in range(0, self.n_edges, 64):  # batched registration, in chunks to bound memory
                tgt = torch.stack([pts3d[i].reshape(-1, 3) for i in ei[c:c + 64]])
                s, R, T = init_im_poses.rigid_points_registration(pi[c:c + 64], tgt, conf=ci[c:c + 64], batch_dims=1)
                for k in range(len(tgt)):
                    self._set_pose(self.pw_poses, c + k, R[k], T[k], scale=s[k])
        else:
            for e, (i, j) in enumerate(self.edges):
                i_j = edge_str(i, j)
                s, R, T = init_im_poses.rigid_points_registration(self.pred_i[i_j], pts3d[i], conf=self.conf_i[i_j])
                self._set_pose(self.pw_poses, e, R, T, scale=s)

    # ------------------------------------------------------------------------------------------------------
    # to be provided by the modes
    # ------------------------------------------------------------------------------------------------------
    def get_known_poses(self):
        """(number of frozen poses, ``[N]`` bool mask, ``[N, 4, 4]`` poses)."""
        if self.has_im_poses and not self.im_poses.requires_grad:
            return self.n_imgs, torch.ones(self.n_imgs, dtype=torch.bool, device=self.device), self.get_im_poses()
        return 0, torch.zeros(self.n_imgs, dtype=torch.bool, device=self.device), None

    def get_focals(self) -> torch.Tensor:
        raise NotImplementedError

    def get_principal_points(self) -> torch.Tensor:
        raise NotImplementedError

    def get_im_poses(self) -> torch.Tensor:
        raise NotImplementedError

    def get_depthmaps(self, raw: bool = False):
        raise NotImplementedError

    def get_pts3d(self, raw: bool = False, **kw):
        raise NotImplementedError

    def get_intrinsics(self) -> torch.Tensor:
        """``[N, 3, 3]`` K with fx = fy = focal and the principal point."""
        return intrinsics_from_focal_pp(self.get_focals().reshape(-1), self.get_principal_points())

    # ------------------------------------------------------------------------------------------------------
    # confidences and masks
    # ------------------------------------------------------------------------------------------------------
    def get_masks(self) -> list[torch.Tensor]:
        """Per image ``[H, W]``: raw confidence > min_conf_thr (initial confidences if thr_for_init_conf)."""
        src = self.init_conf_maps if self.thr_for_init_conf else self.im_conf
        return [c > self.min_conf_thr for c in src]

    def get_conf(self, mode: str | None = None) -> list[torch.Tensor]:
        trf = self.conf_trf if mode is None else get_conf_trf(mode)
        return [trf(c) for c in self.im_conf]

    def get_init_conf(self, mode: str | None = None) -> list[torch.Tensor]:
        trf = self.conf_trf if mode is None else get_conf_trf(mode)
        return [trf(c) for c in self.init_conf_maps]

    def state_dict(self, *args, trainable: bool = True, **kwargs):
        """Trainable entries only (names not starting with '_'), or the opposite with ``trainable=False``."""
        full = super().state_dict(*args, **kwargs)
        return type(full)((k, v) for k, v in full.items() if (not k.startswith("_")) == trainable)

    # ------------------------------------------------------------------------------------------------------
    # alignment
    # ------------------------------------------------------------------------------------------------------
    def compute_global_alignment(self, init: str | None = None, niter_PnP: int = 10, **kw):
        """Initialise (``init`` = 'mst'/'msp', 'known_poses' or None) then run the optimisation loop.

        Loop kwargs: ``niter`` (300), ``schedule`` ('cosine' | 'linear' | 'cycleK'), ``lr`` (0.01), ``lr_min``
        (1e-3). Returns the loss of the last iteration (computed before its step), or ``self`` when nothing is
        trainable. ``save_score_path`` / ``save_score_only`` of the original are not supported.
        """
        if kw.pop("save_score_path", None) is not None or kw.pop("save_score_only", False):
            log.warning("save_score_path / save_score_only are not supported; ignored")
        kw.pop("temporal_smoothing_weight", None)  # accepted and unused, as in the original loop
        with torch.autocast(device_type=self.device.type, enabled=False):
            with self.phase("init"):
                self.initialize(init, niter_PnP=niter_PnP)
            with self.phase("loop"):
                return self._run_loop(**kw)

    @contextlib.contextmanager
    def phase(self, name: str):
        """Accumulate the wall time of a phase in ``self.timings[name]`` (seconds; CUDA is synchronised at both
        ends, once per phase). Phases: 'flows', 'self_masks', 'sam2' (construction), 'init', 'loop'."""
        sync = torch.cuda.synchronize if self.device.type == "cuda" else (lambda *a: None)
        sync(self.device)
        t0 = time.perf_counter()
        try:
            yield
        finally:
            sync(self.device)
            self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - t0

    def initialize(self, init: str | None, niter_PnP: int = 10):
        if init is None:
            return self
        if init in ("msp", "mst"):
            return init_im_poses.init_minimum_spanning_tree(self, niter_PnP=niter_PnP)
        if init == "known_poses":
            return init_im_poses.init_from_known_poses(self, min_conf_thr=self.min_conf_thr, niter_PnP=niter_PnP)
        raise ValueError(f"bad value for init: {init!r}; use 'mst', 'known_poses' or None")

    def _run_loop(self, **kw):
        return global_alignment_loop(self, **kw)

    def loss_and_backward(self, epoch: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """One forward + backward (gradients accumulate into the parameters); returns (loss, flow) detached."""
        loss, flow = self(epoch=epoch)
        loss.backward()
        return loss.detach(), torch.as_tensor(flow).detach()

    # ------------------------------------------------------------------------------------------------------
    # post-processing
    # ------------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def clean_pointcloud(self, tol: float = 0.001, bad_conf: float = 0, max_bad_conf: float = 0):
        """Lower (to ``bad_conf``) the confidence of points hidden behind another view's surface (optimizer.md 12.4).

        In place on ``im_conf``; returns self. For each image i and each other image j in order: project i's
        world points into camera j; a pixel is bad when it lands inside j, in front of the camera, closer than
        (1 - tol) x depth_j there and with a lower confidence than j's (running, partially cleaned maps).
        """
        from monst3r.cloud_opt.postprocess import clean_confidences
        K = self.get_intrinsics().detach()
        c2w = self.get_im_poses().detach()
        depth = [d.detach() for d in self.get_depthmaps()]
        res = clean_confidences(self.im_conf, K, c2w, depth, tol=tol, bad_conf=bad_conf)
        for k, r in enumerate(res):
            self.im_conf[k].copy_(r)
        return self

    # ------------------------------------------------------------------------------------------------------
    # results and writers
    # ------------------------------------------------------------------------------------------------------
    def get_tum_poses(self) -> tuple[np.ndarray, np.ndarray]:
        """(``[N, 7]`` float64 rows x y z qw qx qy qz, timestamps ``[N]`` = 0, 1, ...)."""
        poses = self.get_im_poses().detach().cpu().numpy()
        return np.stack([c2w_to_tumpose(p) for p in poses]), np.arange(len(poses), dtype=np.float64)

    @torch.no_grad()
    def result(self, mask_source: str = "used", include_prev: bool | None = None):
        """Build the :class:`~monst3r.result.Reconstruction` of the current state.

        mask_source: 'used' (default: the masks the flow loss used, i.e. the union with SAM2 when it ran) or
        'sam2_only' (the original's ``save_dynamic_masks``, bug 14.7).
        include_prev: keep the frames re-used from a previous window result (default: dropped after
        ``clean_prev_results()``).
        """
        from monst3r.result import Reconstruction
        c2w = self.get_im_poses().detach().float().cpu().numpy()
        K = self.get_intrinsics().detach().float().cpu().numpy()

        def per_image(flat: torch.Tensor, dtype=np.float32) -> list[np.ndarray]:
            """Padded ``[N, maxHW, ...]`` buffer -> N host arrays ``[H, W, ...]`` (one device-to-host copy)."""
            host = flat.detach().cpu().numpy()
            return [host[k, :h * w].reshape(h, w, *host.shape[2:]).astype(dtype, copy=False)
                    for k, (h, w) in enumerate(self.imshapes)]
        depths = per_image(self.get_depthmaps(raw=True).float())
        confs = per_image(self._im_conf.float())
        init = per_image(self._init_conf.float())
        masks = per_image(self._dyn, bool)
        sam2 = getattr(self, "sam2_dynamic_masks", None)
        sam2_np = None if sam2 is None else [m.detach().cpu().numpy().astype(bool) for m in sam2]
        if mask_source == "sam2_only" and sam2_np is not None:
            masks = sam2_np
        rgb = per_image(self._imgs.float())
        meta = dict(source=type(self).__name__, image_paths=list(self.img_pathes), mask_source=self.mask_source,
                    sam2=getattr(self, "sam2_status", "off"), faithful=self.faithful)
        if self.history["loss"]:
            meta["final_loss"] = float(self.history["loss"][-1])
        rec = Reconstruction(poses=c2w, intrinsics=K, depths=depths, confs=confs, init_confs=init,
                             dynamic_masks=masks, rgb=rgb, meta=meta, sam2_masks=sam2_np)
        n_prev = getattr(self, "n_prev_frames", 0)
        drop = getattr(self, "_prev_cleaned", False) if include_prev is None else not include_prev
        if n_prev and drop:
            rec = rec.subset(slice(n_prev, None))
        return rec

    def _out_path(self, path, default_name: str) -> Path:
        p = Path(path)
        return p / default_name if p.suffix == "" else p

    def save_tum_poses(self, path):
        """Write ``pred_traj.txt`` (TUM: t x y z qw qx qy qz); ``path`` is a file or a folder."""
        from monst3r import io
        rec = self.result()
        io.write_tum_poses(rec.poses, self._out_path(path, io.TRAJ_FILE))
        return rec.poses

    def save_focals(self, path):
        from monst3r import io
        rec = self.result()
        io.write_focals(rec.focals, self._out_path(path, io.FOCAL_FILE))
        return rec.focals

    def save_intrinsics(self, path):
        from monst3r import io
        rec = self.result()
        io.write_intrinsics(rec.intrinsics, self._out_path(path, io.INTRINSICS_FILE))
        return rec.intrinsics

    def save_conf_maps(self, path):
        from monst3r import io
        rec = self.result()
        io.write_conf_maps(rec.confs, path, io.CONF_PATTERN)
        return rec.confs

    def save_init_conf_maps(self, path):
        from monst3r import io
        rec = self.result()
        io.write_conf_maps(rec.init_confs, path, io.INIT_CONF_PATTERN)
        return rec.init_confs

    def save_rgb_imgs(self, path):
        from monst3r import io
        rec = self.result()
        io.write_rgb(rec.rgb, path)
        return rec.rgb

    def save_dynamic_masks(self, path, mask_source: str | None = None):
        """Write ``dynamic_mask_<i>.png``. Default: the masks the loss used; the original wrote the SAM2-only
        masks when SAM2 ran (``mask_source='sam2_only'``, automatically in faithful mode)."""
        from monst3r import io
        src = mask_source or ("sam2_only" if self.faithful else "used")
        rec = self.result(mask_source=src)
        io.write_dynamic_masks(rec.dynamic_masks, path)
        return rec.dynamic_masks

    def save_depth_maps(self, path):
        from monst3r import io
        rec = self.result()
        io.write_depth_maps(rec.depths, path)
        return rec.depths


# ----------------------------------------------------------------------------------------------------------
# the loop
# ----------------------------------------------------------------------------------------------------------
class LoopRecord:
    """Per-iteration loss, flow value and learning rate of an optimisation loop, in buffers allocated once.

    Allocation stability (long runs): keeping one small tensor per iteration alive (a list of detached losses)
    leaves a small live block in the middle of every iteration's freed working memory; on the CPU the C heap can
    then not coalesce those holes, the next iteration's large blocks no longer fit, and the process RSS grows with
    the number of iterations while the live tensor bytes stay constant (measured: +0.4 MiB per iteration, 8
    frames at 224x224). Writing each value into a preallocated ``[niter]`` buffer (an in-place copy on the
    loss's device: no host synchronisation per iteration) leaves nothing of an iteration alive after it.
    """

    def __init__(self, n: int, device: torch.device, dtype: torch.dtype = torch.float32):
        self.loss = torch.zeros(n, dtype=dtype, device=device)
        self.flow = torch.zeros(n, dtype=dtype, device=device)
        self.lr = [0.0] * n  # floats preallocated too (Python small objects, outside the C heap's large blocks)
        self.n = 0

    def put(self, it: int, loss: torch.Tensor, flow, lr: float) -> None:
        self.loss[it].copy_(loss.detach())
        if isinstance(flow, torch.Tensor):
            self.flow[it].copy_(flow.detach())
        else:
            self.flow[it].fill_(float(flow))
        self.lr[it] = lr
        self.n = it + 1

    def last_loss(self) -> float | None:
        return float(self.loss[self.n - 1]) if self.n else None

    def extend_history(self, history: dict) -> None:
        """Append the recorded iterations to ``history['loss' | 'flow' | 'lr']`` (Python floats)."""
        if not self.n:
            return
        history["loss"].extend(self.loss[:self.n].double().cpu().tolist())
        history["flow"].extend(self.flow[:self.n].double().cpu().tolist())
        history["lr"].extend(self.lr[:self.n])


def make_adam(params, lr: float) -> torch.optim.Adam:
    """Adam with the original's betas (0.9, 0.9), eps 1e-8, no weight decay; the fused implementation when this
    torch build has it (same update rule, one kernel for all parameters)."""
    try:
        return torch.optim.Adam(params, lr=lr, betas=(0.9, 0.9), fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(params, lr=lr, betas=(0.9, 0.9))


def global_alignment_loop(net: BasePCOptimizer, lr: float = 0.01, niter: int = 300, schedule: str = "cosine",
                          lr_min: float = 1e-3, temporal_smoothing_weight=None, depth_map_save_dir=None,
                          max_iters: int | None = None):
    """Adam (betas 0.9, 0.9) over every trainable parameter with the ``schedule`` learning rate (optimizer.md 9).

    Records ``net.history`` (loss before each step, flow value, lr). Returns the last loss as a float, or the net
    itself when nothing is trainable. ``max_iters``: stop after that many iterations of the ``niter`` schedule
    (for tests and benchmarks). Allocation-stable: nothing created in an iteration outlives it (the recorded
    values go into buffers allocated once, :class:`LoopRecord`), so the process memory does not grow with
    ``niter`` (tests/test_optimizer_memory.py, bench/bench_rss.py).
    """
    params = [p for p in net.parameters() if p.requires_grad]
    if not params:
        return net
    if depth_map_save_dir is not None:
        log.warning("depth_map_save_dir is not supported; ignored")
    optimizer = make_adam(params, lr)
    n_run = niter if max_iters is None else min(niter, max_iters)
    rec = LoopRecord(n_run, net.device, params[0].dtype)
    bar = tqdm(total=niter, disable=not net.verbose, desc="global alignment", leave=False)
    try:
        for it in range(n_run):
            cur_lr = get_lr(schedule, it / niter, lr, lr_min)
            for g in optimizer.param_groups:
                g["lr"] = cur_lr
            optimizer.zero_grad(set_to_none=True)
            if net.empty_cache and net.device.type == "cuda":
                torch.cuda.empty_cache()
            loss, flow = net.loss_and_backward(epoch=it)
            optimizer.step()
            rec.put(it, loss, flow, cur_lr)
            del loss, flow  # nothing of this iteration outlives it (see LoopRecord)
            bar.update()
            if net.verbose and (it % 25 == 0 or it == niter - 1):
                bar.set_postfix(lr=f"{cur_lr:g}", loss=rec.last_loss())
    finally:
        bar.close()
    rec.extend_history(net.history)
    last = rec.last_loss()
    return last if last is not None else net


__all__ = ["BasePCOptimizer", "LoopRecord", "global_alignment_loop"]
