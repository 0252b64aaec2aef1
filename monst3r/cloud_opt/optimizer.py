"""``PointCloudOptimizer``: global alignment of per-frame depth, pose and intrinsics (optimizer.md 4-9).

Parameters (batched layout, also used by the non-batched and window-wise modes):
``im_depthmaps [N, maxHW]`` log-depth, ``im_poses [N, 7]`` (XYZW quaternion + signed-log translation, c2w),
``im_focals [1 | N, 1]`` (focal = exp(p / focal_break)), ``im_pp [N, 2]`` (pp = (W/2, H/2) + 10 p),
``pw_poses [E, 8]`` and ``pw_adaptors [E, 2]`` (base class).

Loss (section 5): pairwise alignment + temporal smoothness + optical-flow consistency on static pixels
(+ optional depth prior). Modes:
- batched (default): one forward over all pairs. The two heavy terms run through the chunked kernels of
  ``kernels.py`` (gradients computed during the forward pass, pair data read in place), so the peak memory is
  the stored pair data plus a few chunk-sized buffers;
- non-batched (``batchify=False``): the same code path (there is nothing left to save by accumulating
  gradients pair by pair); by default the result equals the batched mode, ``faithful=True`` reproduces the
  original's per-edge normalisation of the flow and depth terms (bug 14.6);
- window-wise (``window_wise=True``): overlapping windows of frames optimised one after the other (section 9.1),
  optionally continuing a previous result (``prev_video_results``).
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from tqdm.auto import tqdm

from monst3r.cloud_opt import init_im_poses
from monst3r.cloud_opt.base_opt import BasePCOptimizer, LoopRecord, make_adam
from monst3r.cloud_opt.commons import ALL_DISTS, get_lr, ravel_pad_stack, reverse_edge_index
from monst3r.cloud_opt.kernels import default_chunk_rows, ego_flow_sum, pair_align_sum
from monst3r.cloud_opt.losses import depth_regularization_si_weighted
from monst3r.errors import Monst3rInputError
from monst3r.utils.geometry import tum_to_pose_matrix, xy_grid

log = logging.getLogger(__name__)

DEFAULT_SEARAFT_CKPT = "searaft"        # third_party.raft name of Tartan-C-T-TSKH-spring540x960-M.pth
DEFAULT_RAFT_SINTEL_CKPT = "raft-sintel"  # classic RAFT, raft-sintel.pth (sintel_ckpt=True)


@dataclass
class _Ctx:
    """Index data of one (sub-)problem: a range of frames and the pairs inside it (local frame indices).

    The large per-pair inputs (predictions, optical flows) are never copied: ``pred_rows`` / ``fl_rows`` select
    rows of the scene's stored buffers (None = all rows, in order) and the loss kernels gather them chunk by chunk.
    """
    n: int                      # number of frames
    start: int                  # first frame (global index of local frame 0)
    ei: torch.Tensor            # [e] local index of view 1
    ej: torch.Tensor            # [e] local index of view 2
    pred_rows: torch.Tensor | None  # [2e] rows of the scene's ``_pred_t`` / ``_stacked_conf`` (view-1 rows of the
                                    # pairs, then view-2 ones)
    norm: torch.Tensor          # [2e] normalisation of each row's weights conf_trf(conf) (total area, or area * e)
    idx: torch.Tensor           # [2e] image of each row (cat(ei, ej))
    grid: torch.Tensor          # [2, HW] (shared) or [n, 2, HW]
    edge_ids: torch.Tensor      # [e] global edge indices
    fl_src: torch.Tensor | None = None     # [D] local source frame of each directed flow pair
    fl_tgt: torch.Tensor | None = None
    fl_rows: torch.Tensor | None = None    # [D] rows of the scene's flow store (None: all rows in order)
    fl_static: torch.Tensor | None = None  # [n, HW] float 0/1, static pixels of each frame
    fl_valid: bool = False                 # also mask with the stored forward-backward validity of each row
    fl_group: torch.Tensor | None = None   # [D] 0 = i->j direction of an edge, 1 = j->i (two pooled groups)
    fl_group_rows: tuple = ()              # row indices of each non-empty group
    fl_factor: float = 1.0                 # 2 when each directed pair stands for both directions of a pair
    fl_ph: torch.Tensor | None = None      # [3, HW] homogeneous pixel grid
    dyn: torch.Tensor | None = None        # [n, HW] bool dynamic masks (depth prior)
    init_depth: torch.Tensor | None = None  # [n, HW] (depth prior)


@dataclass
class _Vars:
    """Decoded variables of a (sub-)problem: depth ``[n, HW]``, image c2w R ``[n, 3, 3]`` / T ``[n, 3]``, focals
    ``[n]``, principal points ``[n, 2]``, scaled pair poses M ``[e, 3, 3]`` / t ``[e, 3]``, adaptors ``[e, 3]``."""
    depth: torch.Tensor
    R: torch.Tensor
    T: torch.Tensor
    focals: torch.Tensor
    pps: torch.Tensor
    M: torch.Tensor
    t: torch.Tensor
    adapt: torch.Tensor | None = None


class PointCloudOptimizer(BasePCOptimizer):
    """Optimise a global point cloud (depth + pose + intrinsics per image) from pairwise predictions.

    Original options and defaults: ``optimize_pp=False``, ``focal_break=20``, ``shared_focal=False``,
    ``flow_loss_fn='smooth_l1'`` (or 'mse'), ``flow_loss_weight=0``, ``depth_regularize_weight=0``,
    ``num_total_iter=300``, ``temporal_smoothing_weight=0``, ``translation_weight=0.1``,
    ``flow_loss_start_epoch=0.15``, ``flow_loss_thre=50``, ``sintel_ckpt=False``, ``use_self_mask=False``,
    ``pxl_thre=50``, ``sam2_mask_refine=True``, ``motion_mask_thre=0.35``, ``batchify=True``,
    ``window_wise=False``, ``window_size=100``, ``window_overlap_ratio=0.5``, ``prev_video_results=None``.

    Additions: ``flows=(flow_ij, flow_ji[, valid_i, valid_j])`` precomputed optical flows per edge
    (``[E, 2, H, W]``, flow from image i to j and back; skips the flow network); ``flow_model`` (a loaded flow
    network) or ``flow_checkpoint`` (path or name for ``third_party.raft.load_flow_model``);
    ``dynamic_masks`` (``[N, H, W]`` bool, user masks: no self masks are computed);
    ``flow_use_validity`` (also ignore pixels failing the forward-backward check; off = the original's loss);
    ``sam2_checkpoint`` / ``sam2_config``; ``sam2_predictor`` (an already-built SAM2 video predictor, re-used
    instead of building one: the streaming mode shares one across its chunks); ``chunk_size`` (pairs per chunk of the loss kernels, all modes;
    default: a per-device pixel budget, see ``kernels.CHUNK_PIXELS``);
    ``niter_PnP_pairs`` (RANSAC iterations of the motion-mask pair views, 100); ``faithful`` (see base class).
    """

    has_im_poses = True

    def __init__(self, *args, optimize_pp: bool = False, focal_break: float = 20, shared_focal: bool = False,
                 flow_loss_fn: str = "smooth_l1", flow_loss_weight: float = 0.0,
                 depth_regularize_weight: float = 0.0, num_total_iter: int = 300,
                 temporal_smoothing_weight: float = 0, translation_weight: float | str = 0.1,
                 flow_loss_start_epoch: float = 0.15, flow_loss_thre: float = 50, sintel_ckpt: bool = False,
                 use_self_mask: bool = False, pxl_thre: float = 50, sam2_mask_refine: bool = True,
                 motion_mask_thre: float = 0.35, batchify: bool = True, window_wise: bool = False,
                 window_size: int = 100, window_overlap_ratio: float = 0.5, prev_video_results: dict | None = None,
                 flows=None, flow_model=None, flow_checkpoint: str | None = None, flow_use_validity: bool = False,
                 sam2_checkpoint: str | None = None, sam2_config: str | None = None, chunk_size: int | None = None,
                 niter_PnP_pairs: int = 100, sam2_predictor=None, **kw: Any):
        super().__init__(*args, **kw)
        N, A, dev = self.n_imgs, self.max_area, self.device
        self.focal_break = focal_break
        self.shared_focal = shared_focal
        self.optimize_pp = optimize_pp
        self.num_total_iter = num_total_iter
        self.temporal_smoothing_weight = float(temporal_smoothing_weight)
        self.translation_weight = float(translation_weight)
        self.flow_loss_weight = float(flow_loss_weight)
        self.flow_loss_start_epoch = flow_loss_start_epoch
        self.flow_loss_thre = flow_loss_thre
        self.depth_regularize_weight = float(depth_regularize_weight)
        self.pxl_thre = pxl_thre
        self.motion_mask_thre = motion_mask_thre
        self.use_self_mask = use_self_mask
        self.sam2_mask_refine = sam2_mask_refine
        self.flow_use_validity = flow_use_validity
        if flow_loss_fn not in ("smooth_l1", "mse"):
            raise ValueError(f"bad flow_loss_fn {flow_loss_fn!r}; use 'smooth_l1' or 'mse'")
        self.flow_loss_fn = flow_loss_fn
        self.window_wise = window_wise
        self.batchify = batchify and not window_wise
        self.window_size = window_size
        self.window_overlap_ratio = window_overlap_ratio
        self.chunk_size = chunk_size
        self.sam2_status = "off"
        self.sam2_dynamic_masks = None
        self._sam2_predictor = sam2_predictor
        self.init_depthmaps: list[torch.Tensor] | None = None

        # parameters
        self.im_depthmaps = nn.Parameter(torch.randn(N, A, device=dev) / 10 - 3)
        self.im_poses = nn.Parameter(self.rand_pose((N, self.POSE_DIM)).float().to(dev))
        default_focals = torch.tensor([self.focal_break * np.log(max(H, W)) for H, W in self.imshapes],
                                      dtype=torch.float32, device=dev)
        self.im_focals = nn.Parameter(default_focals[:1].clone().view(1, 1) if shared_focal
                                      else default_focals.view(N, 1).clone())
        self.im_pp = nn.Parameter(torch.zeros(N, 2, device=dev))
        self.im_pp.requires_grad_(optimize_pp)
        self.register_buffer("_pp", torch.tensor([(W / 2, H / 2) for H, W in self.imshapes],
                                                 dtype=torch.float32, device=dev), persistent=False)
        grids = [xy_grid(W, H, device=dev, dtype=torch.float32).reshape(-1, 2) for H, W in self.imshapes]
        # pixel grids, channels-first [N, 2, maxHW] (zero padded)
        self.register_buffer("_grid", ravel_pad_stack(grids, A, 1).to(dev).transpose(1, 2).contiguous(),
                             persistent=False)
        self.register_buffer("_root_mask", torch.zeros(N, dtype=torch.bool, device=dev), persistent=False)

        # optical flow, motion masks
        self._clear_flows()
        if self.flow_loss_weight > 0:
            if not self.same_size:
                log.warning("images have different sizes: the optical-flow loss and the self motion masks need "
                            "equal sizes and are disabled")
                self.flow_loss_weight = 0.0
            else:
                self._setup_flow(flows, flow_model, flow_checkpoint, sintel_ckpt, niter_PnP_pairs,
                                 sam2_checkpoint, sam2_config)
        elif flows is not None:
            self._store_flows(flows)

        # continuation of a previous window-wise result
        self.n_prev_frames = 0
        self._prev_cleaned = False
        if prev_video_results is not None:
            self._preset_prev_results(prev_video_results)
        self._full_ctx: _Ctx | None = None

    # ------------------------------------------------------------------------------------------------------
    # flows and masks
    # ------------------------------------------------------------------------------------------------------
    # Storage: ``flow_ij`` ``[E, 2, H, W]`` (and ``flow_valid_mask_i`` ``[E, 1, H, W]`` bool). When the flows of
    # each edge and of its reverse are consistent (flow_ji of edge e == flow_ij of the reverse edge, always the
    # case for computed flows), ``flow_ji`` / ``flow_valid_mask_j`` are not stored: the properties below
    # materialise them on demand, and the loss reads each directed flow once from ``flow_ij``. Otherwise both
    # directions live in one ``[2E, 2, HW]`` store of which ``flow_ij`` / ``flow_ji`` are views.
    def _clear_flows(self) -> None:
        self.flow_ij = self.flow_valid_mask_i = None
        self._flow_ji = self._flow_valid_j = None
        self._flow_rev: torch.Tensor | None = None  # [E] reverse edge of each edge, when flow_ji is derived
        self._flow_obs = self._flow_valid = None    # [D, 2, HW] / [D, 1, HW] stores read by the loss

    @property
    def flow_ji(self) -> torch.Tensor | None:
        """``[E, 2, H, W]`` flow from image j to image i of each edge (a new tensor when derived from flow_ij)."""
        if self._flow_ji is None and self.flow_ij is not None and self._flow_rev is not None:
            return self.flow_ij.index_select(0, self._flow_rev)
        return self._flow_ji

    @property
    def flow_valid_mask_j(self) -> torch.Tensor | None:
        if self._flow_valid_j is None and self.flow_valid_mask_i is not None and self._flow_rev is not None:
            return self.flow_valid_mask_i.index_select(0, self._flow_rev)
        return self._flow_valid_j

    @torch.no_grad()
    def _set_flows(self, fij: torch.Tensor, fji: torch.Tensor, vi: torch.Tensor | None, vj: torch.Tensor | None,
                   consistent: bool | None = None) -> None:
        """Store the flows of every edge compactly (see above). ``consistent`` None: checked here, chunk by chunk."""
        E = self.n_edges
        H, W = self.imshapes[0]
        rev = reverse_edge_index(self.edges)
        if rev is not None and consistent is None:
            rev_t = torch.tensor(rev, device=fij.device)
            step = max(1, (1 << 22) // max(H * W, 1))
            consistent = all(torch.equal(fji[a:a + step], fij.index_select(0, rev_t[a:a + step]))
                             for a in range(0, E, step))
            if consistent and vi is not None:
                consistent = all(torch.equal(vj[a:a + step], vi.index_select(0, rev_t[a:a + step]))
                                 for a in range(0, E, step))
        self._clear_flows()
        if rev is not None and consistent:
            self.flow_ij = fij.float().to(self.device)
            self.flow_valid_mask_i = None if vi is None else vi.bool().reshape(E, 1, H, W).to(self.device)
            self._flow_rev = torch.tensor(rev, device=self.device)
            self._flow_obs = self.flow_ij.view(E, 2, H * W)
            self._flow_valid = None if vi is None else self.flow_valid_mask_i.view(E, 1, H * W)
        else:
            obs = torch.empty(2 * E, 2, H * W, device=self.device)
            obs[:E].copy_(fij.reshape(E, 2, -1))
            obs[E:].copy_(fji.reshape(E, 2, -1))
            self._flow_obs = obs
            self.flow_ij, self._flow_ji = obs[:E].view(E, 2, H, W), obs[E:].view(E, 2, H, W)
            if vi is not None:
                val = torch.empty(2 * E, 1, H * W, dtype=torch.bool, device=self.device)
                val[:E].copy_(vi.reshape(E, 1, -1))
                val[E:].copy_(vj.reshape(E, 1, -1))
                self._flow_valid = val
                self.flow_valid_mask_i = val[:E].view(E, 1, H, W)
                self._flow_valid_j = val[E:].view(E, 1, H, W)

    def _store_flows(self, flows) -> None:
        if not isinstance(flows, (list, tuple)) or len(flows) not in (2, 4):
            raise Monst3rInputError("flows must be (flow_ij, flow_ji) or (flow_ij, flow_ji, valid_i, valid_j)")
        E = self.n_edges
        H, W = self.imshapes[0]
        fij = torch.as_tensor(np.asarray(flows[0]) if not isinstance(flows[0], torch.Tensor) else flows[0])
        fji = torch.as_tensor(np.asarray(flows[1]) if not isinstance(flows[1], torch.Tensor) else flows[1])
        for name, f in (("flow_ij", fij), ("flow_ji", fji)):
            if tuple(f.shape) != (E, 2, H, W):
                raise Monst3rInputError(f"{name} must be [{E}, 2, {H}, {W}] (one flow per pair), got {tuple(f.shape)}")
        vi = vj = None
        if len(flows) == 4 and flows[2] is not None:
            vi = torch.as_tensor(flows[2]).bool().reshape(E, 1, H, W)
            vj = torch.as_tensor(flows[3]).bool().reshape(E, 1, H, W)
        self._set_flows(fij.float(), fji.float(), vi, vj)

    def _compute_flows(self, flow_model, flow_checkpoint, sintel_ckpt) -> None:
        """Flow network on every unordered pair once (both directions), mirrored to all directed edges."""
        from monst3r.cloud_opt import motion  # written alongside; imported lazily (needs the flow network)
        if flow_model is None:
            from third_party.raft import load_flow_model
            name = flow_checkpoint or (DEFAULT_RAFT_SINTEL_CKPT if sintel_ckpt else DEFAULT_SEARAFT_CKPT)
            flow_model = load_flow_model(name, self.device)
        rev = reverse_edge_index(self.edges)
        if rev is None:
            unique = list(range(self.n_edges))
        else:
            unique = [e for e in range(self.n_edges) if e <= rev[e]]
        imgs = self._imgs.reshape(self.n_imgs, *self.imshapes[0], 3)
        fij, fji, vi, vj = motion.compute_pair_flows(flow_model, imgs, [self.edges[e] for e in unique],
                                                     chunk_size=12, iters=20)
        del flow_model
        fij, fji, vi, vj = (t.to(self.device) for t in (fij, fji, vi, vj))
        H, W = self.imshapes[0]
        vi, vj = vi.reshape(-1, 1, H, W), vj.reshape(-1, 1, H, W)
        if rev is None:
            self._set_flows(fij, fji, vi, vj, consistent=False)
            return
        # edge e = unique[u] gets (fij[u], fji[u]); its reverse r gets (fji[u], fij[u]): flow_ij of every edge is
        # one of the computed flows, and flow_ji of every edge is flow_ij of its reverse
        E = self.n_edges
        fwd = torch.tensor(unique, device=self.device)
        bwd = torch.tensor([rev[e] for e in unique], device=self.device)
        F_ij = fij.new_empty(E, 2, H, W).index_copy_(0, fwd, fij)
        V_i = vi.new_empty(E, 1, H, W).index_copy_(0, fwd, vi)
        del fij, vi
        F_ij.index_copy_(0, bwd, fji)
        V_i.index_copy_(0, bwd, vj)
        del fji, vj
        self._set_flows(F_ij, None, V_i, None, consistent=True)

    def _setup_flow(self, flows, flow_model, flow_checkpoint, sintel_ckpt, niter_PnP_pairs,
                    sam2_checkpoint, sam2_config) -> None:
        with self.phase("flows"):
            if flows is not None:
                self._store_flows(flows)
            else:
                self._compute_flows(flow_model, flow_checkpoint, sintel_ckpt)
        with self.phase("self_masks"):
            self._self_masks(niter_PnP_pairs)
        if self.sam2_mask_refine:
            with self.phase("sam2"):
                self._refine_with_sam2(sam2_checkpoint, sam2_config)

    def _self_masks(self, niter_PnP_pairs: int) -> None:
        if self.use_self_mask and not self.user_dynamic_masks:
            if not self.is_symmetrized:
                raise Monst3rInputError("self motion masks (use_self_mask=True) need a symmetrized pair graph; "
                                        "build the pairs with symmetrize=True or pass dynamic_masks")
            from monst3r.cloud_opt.motion_mask import motion_masks_from_pairs
            H, W = self.imshapes[0]
            E = self.n_edges
            masks = motion_masks_from_pairs(
                self._stacked_pred_i.unflatten(1, (H, W)), self._stacked_pred_j.unflatten(1, (H, W)),
                self._stacked_conf_i.reshape(E, H, W), self._stacked_conf_j.reshape(E, H, W), self.edges,
                self.flow_ij, self._flow_ji, self.n_imgs, motion_mask_thre=self.motion_mask_thre,
                min_conf_thr=self.min_conf_thr, niter_PnP=niter_PnP_pairs, faithful=self.faithful)
            self._dyn.copy_(masks.reshape(self.n_imgs, -1))
            self.mask_source = "self"

    def _refine_with_sam2(self, checkpoint, config) -> None:
        """OR the current masks with SAM2's propagation (optimizer.md 7.3); skipped with a warning if unavailable."""
        try:
            from monst3r.cloud_opt import motion
            refine = motion.refine_motion_masks_with_sam2
        except (ImportError, AttributeError) as err:
            log.warning("SAM2 mask refinement skipped: %s", err)
            self.sam2_status = f"skipped: {err}"
            return
        H, W = self.imshapes[0]
        imgs = self._imgs.reshape(self.n_imgs, H, W, 3)
        masks = self._dyn.reshape(self.n_imgs, H, W)
        try:
            extra = {} if self._sam2_predictor is None else dict(predictor=self._sam2_predictor)
            res = refine(imgs, masks, checkpoint=checkpoint, config=config, device=self.device, **extra)
        except (ImportError, FileNotFoundError, RuntimeError) as err:
            log.warning("SAM2 mask refinement skipped: %s", err)
            self.sam2_status = f"skipped: {err}"
            return
        if hasattr(res, "skipped"):  # motion.Sam2Refinement(masks, sam2_masks, skipped, reason)
            if res.skipped:
                self.sam2_status = f"skipped: {res.reason}"
                return
            sam2_only = res.sam2_masks
        else:  # (masks, info) form
            refined, info = res
            if (info or {}).get("skipped"):
                self.sam2_status = f"skipped: {(info or {}).get('reason')}"
                return
            sam2_only = (info or {}).get("sam2_masks", refined)
        sam2_only = torch.stack([torch.as_tensor(m) for m in sam2_only]) if isinstance(sam2_only, (list, tuple)) \
            else torch.as_tensor(sam2_only)
        sam2_only = sam2_only.bool().to(self.device).reshape(self.n_imgs, H, W)
        self.sam2_dynamic_masks = list(sam2_only.unbind(0))
        # the loss uses the union (optimizer.md 7.3)
        self._dyn.copy_((masks | sam2_only).reshape(self.n_imgs, -1))
        self.sam2_status = "refined"

    # ------------------------------------------------------------------------------------------------------
    # getters
    # ------------------------------------------------------------------------------------------------------
    def get_focals(self) -> torch.Tensor:
        """``[N, 1]`` focal lengths (the shared one repeated)."""
        f = (self.im_focals / self.focal_break).exp()
        return f.expand(self.n_imgs, 1) if self.shared_focal else f

    def get_principal_points(self) -> torch.Tensor:
        """``[N, 2]`` (cx, cy)."""
        return self._pp + 10 * self.im_pp

    def _pose_params(self) -> torch.Tensor:
        """Image pose parameters with the gauge-anchor (root) translation frozen explicitly (default mode; in
        faithful mode it is frozen only by the zero gradient of signed_expm1 at exactly 0, as the original)."""
        p = self.im_poses
        if not self.faithful and bool(self._root_mask.any()):
            p = torch.where(self._root_mask[:, None] & (torch.arange(7, device=p.device) >= 4), p.detach(), p)
        return p

    def get_im_poses(self) -> torch.Tensor:
        """``[N, 4, 4]`` camera-to-world."""
        return self._get_poses(self._pose_params())

    def get_depthmaps(self, raw: bool = False):
        """exp of the log-depth parameters: ``[N, maxHW]`` when raw, else a list of ``[H, W]``."""
        res = self.im_depthmaps.exp()
        if raw:
            return res
        return [self._unravel(d, k) for k, d in enumerate(res)]

    def depth_to_pts3d(self) -> torch.Tensor:
        """``[N, maxHW, 3]`` world points of every pixel."""
        c2w = self.get_im_poses()
        return self._world_points(self.im_depthmaps.exp(), c2w[:, :3, :3], c2w[:, :3, 3], self.get_focals(),
                                  self.get_principal_points(), self._grid).transpose(1, 2)

    def get_pts3d(self, raw: bool = False, **kw):
        """World points: ``[N, maxHW, 3]`` when raw, else a list of ``[H, W, 3]`` (extra kwargs ignored)."""
        res = self.depth_to_pts3d()
        if raw:
            return res
        return [self._unravel(p, k) for k, p in enumerate(res)]

    def get_init_depthmaps(self):
        return self.init_depthmaps

    @staticmethod
    def _world_points(depth, R, T, focals, pps, grid) -> torch.Tensor:
        """depth ``[n, HW]``, R ``[n, 3, 3]``, T ``[n, 3]`` (c2w), focals ``[n]``, pps ``[n, 2]``, grid ``[2, HW]`` or
        ``[n, 2, HW]`` -> channels-first world points ``[n, 3, HW]`` (camera point (d (u-cx)/f, d (v-cy)/f, d))."""
        cam_xy = depth[:, None, :] * (grid - pps[:, :, None]) / focals.reshape(-1, 1, 1)
        cam = torch.cat((cam_xy, depth[:, None, :]), dim=1)
        return torch.baddbmm(T[:, :, None], R, cam)

    # ------------------------------------------------------------------------------------------------------
    # setters / presets
    # ------------------------------------------------------------------------------------------------------
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
            focals.append(float(init_im_poses.estimate_focal_knowing_depth(pts)[0]))
        if self.shared_focal:
            fs = [f for f in focals if f is not None]
            self._set_focal(0, sum(fs) / len(fs))
        else:
            for k, f in enumerate(focals):
                if f is not None:
                    self._set_focal(k, f)

    # ------------------------------------------------------------------------------------------------------
    # initialisation hooks
    # ------------------------------------------------------------------------------------------------------
    def initialize(self, init: str | None, niter_PnP: int = 10):
        self._full_ctx = None
        if init in ("msp", "mst") and self.n_prev_frames:
            self._root_mask.zero_()
            return init_im_poses.init_from_previous_result(self, self.n_prev_frames, niter_PnP=niter_PnP)
        if init in ("msp", "mst"):
            pts3d, _, im_focals, im_poses, trav = init_im_poses.minimum_spanning_tree(
                self.imshapes, self.edges, self.pred_i, self.pred_j, self.conf_i, self.conf_j, self.im_conf,
                self.min_conf_thr, self.device, has_im_poses=True, niter_PnP=niter_PnP, faithful=self.faithful,
                return_traversal=True)
            init_im_poses.init_from_pts3d(self, pts3d, im_focals, im_poses)
            self._root_mask.zero_()
            if self.im_poses.requires_grad:
                self._root_mask[trav[0][0]] = True  # gauge anchor: translation stays exactly 0
            return self
        if init == "known_poses":
            if self.camera_poses is not None:
                self.preset_pose(self.camera_poses, requires_grad=self.im_poses.requires_grad)
            self._root_mask.zero_()
        return super().initialize(init, niter_PnP=niter_PnP)

    # ------------------------------------------------------------------------------------------------------
    # problem description (all frames, or a window)
    # ------------------------------------------------------------------------------------------------------
    def _flow_directed(self):
        """Directed flow pairs (src, tgt, group, factor) of the rows of the flow store ``_flow_obs``.

        With a symmetrized graph whose flows are consistent (flow_ji of an edge == flow_ij of its reverse) the
        i->j terms of all edges already contain every j->i term of the reverse edges, so each directed pair is
        evaluated once and counted twice (same value as the original, half the work); the store then holds
        flow_ij only. Otherwise the store holds flow_ij then flow_ji (two pooled groups).
        """
        E = self.n_edges
        if self._flow_rev is not None:
            return self._ei, self._ej, torch.zeros(E, dtype=torch.long, device=self.device), 2.0
        src, tgt = torch.cat((self._ei, self._ej)), torch.cat((self._ej, self._ei))
        group = torch.cat((torch.zeros(E, dtype=torch.long), torch.ones(E, dtype=torch.long))).to(self.device)
        return src, tgt, group, 1.0

    def _make_ctx(self, frames: range | None = None) -> _Ctx:
        """Index data for frames ``[start, end)`` (all frames when None) and the pairs inside."""
        N = self.n_imgs
        start, end = (0, N) if frames is None else (frames.start, frames.stop)
        inside = (self._ei >= start) & (self._ei < end) & (self._ej >= start) & (self._ej < end)
        eids = torch.nonzero(inside).ravel()
        ei, ej = self._ei[eids] - start, self._ej[eids] - start
        grid = self._grid[0] if self.same_size else self._grid[start:end]
        E = self.n_edges
        full = len(eids) == E
        rows = None if full else torch.cat((eids, eids + E))
        areas = torch.cat((self._edge_area_i[eids], self._edge_area_j[eids]))
        e = len(eids)
        if self.faithful and not self.batchify and not self.window_wise and not self.same_size:
            norm = areas * max(e, 1)  # the original's non-batched per-edge normalisation (only differs then)
        else:
            norm = torch.cat((self._edge_area_i[eids].sum().expand(e), self._edge_area_j[eids].sum().expand(e)))
        ctx = _Ctx(n=end - start, start=start, ei=ei, ej=ej, pred_rows=rows, norm=norm, idx=torch.cat((ei, ej)), grid=grid,
                   edge_ids=eids)
        if self.flow_loss_weight > 0 and self._flow_obs is not None:
            src, tgt, group, factor = self._flow_directed()
            keep = (src >= start) & (src < end) & (tgt >= start) & (tgt < end)
            d = torch.nonzero(keep).ravel()
            ctx.fl_rows = None if len(d) == len(src) else d
            ctx.fl_src, ctx.fl_tgt = src[d] - start, tgt[d] - start
            ctx.fl_static = (~self._dyn[start:end]).float()  # float 0/1: boolean ops are slow on CPU
            ctx.fl_valid = self.flow_use_validity and self._flow_valid is not None
            g = group[d]
            present = [k for k in (0, 1) if bool((g == k).any())]
            ctx.fl_group = torch.zeros_like(g)
            rows_of = []
            for pos, k in enumerate(present):
                sel = torch.nonzero(g == k).ravel()
                ctx.fl_group[sel] = pos
                rows_of.append(sel)
            ctx.fl_group_rows = tuple(rows_of)
            ctx.fl_factor = factor
            if grid.ndim == 2:
                ctx.fl_ph = torch.cat((grid, torch.ones_like(grid[:1])), dim=0)  # [3, HW]
        if self.depth_regularize_weight > 0 and self.init_depthmaps is not None:
            ctx.dyn = self._dyn[start:end]
            ctx.init_depth = ravel_pad_stack(self.init_depthmaps[start:end], self.max_area).to(self.device)
        return ctx

    def _ctx(self) -> _Ctx:
        if self._full_ctx is None:
            self._full_ctx = self._make_ctx()
        return self._full_ctx

    # ------------------------------------------------------------------------------------------------------
    # loss
    # ------------------------------------------------------------------------------------------------------
    def _flow_active(self, epoch: int) -> bool:
        return (self.flow_loss_weight > 0 and self.flow_ij is not None
                and epoch >= self.num_total_iter * self.flow_loss_start_epoch)

    @property
    def _per_edge_flow(self) -> bool:
        """The original's non-batched flow pooling (per directed pair, then summed / E): faithful mode only."""
        return self.faithful and not self.batchify and not self.window_wise

    def _gate(self, flow: torch.Tensor) -> torch.Tensor:
        if self.flow_loss_thre > 0:
            return torch.where(flow > self.flow_loss_thre, torch.zeros_like(flow), flow)
        return flow

    # variables -------------------------------------------------------------------------------------------
    def _make_vars(self, depth_log, pose_params, focal_params, pp_params, pps_base, pw_params, norm, adapt) -> _Vars:
        """Decode raw parameters (one fused pose decoding for images and pairs)."""
        n = pose_params.shape[0]
        R, T = self._decode_poses(torch.cat((pose_params, pw_params[:, :7])))
        scale = pw_params[:, 7].exp() * norm
        focals = (focal_params.reshape(-1) / self.focal_break).exp()
        if focals.numel() == 1 and n > 1:
            focals = focals.expand(n)
        return _Vars(depth=depth_log.exp(), R=R[:n], T=T[:n], focals=focals, pps=pps_base + 10 * pp_params,
                     M=R[n:] * scale[:, None, None], t=T[n:] * scale[:, None], adapt=adapt)

    def _variables(self) -> _Vars:
        adapt = self.get_adaptors() if self.has_adaptors else None
        return self._make_vars(self.im_depthmaps, self._pose_params(), self.im_focals, self.im_pp, self._pp,
                               self.pw_poses, self.get_pw_norm_scale_factor(), adapt)

    # terms -----------------------------------------------------------------------------------------------
    def _chunk_rows(self) -> int:
        """Pairs per chunk of the loss kernels (``chunk_size``, or a per-device pixel budget)."""
        return default_chunk_rows(self.max_area, self.device, self.chunk_size)

    def _pair_align(self, ctx: _Ctx, X: torch.Tensor, M: torch.Tensor, t: torch.Tensor,
                    adapt: torch.Tensor | None) -> torch.Tensor:
        """Normalised alignment term l_i + l_j (optimizer.md 5.1) over the pairs of ``ctx``.

        X: ``[n, 3, HW]`` world points; M ``[e, 3, 3]`` / t ``[e, 3]``: scaled pair poses of the pairs of ``ctx``.
        Both views of every pair go through one fused, chunked kernel call (rows of view 1, then of view 2).
        """
        M2, t2 = torch.cat((M, M)), torch.cat((t, t))
        a2 = torch.cat((adapt, adapt)) if adapt is not None else None
        squared = self.dist is ALL_DISTS["l2"]
        return pair_align_sum(X, M2, t2, self._pred_t, self._row_weights(ctx), ctx.idx, rows=ctx.pred_rows,
                              adapt=a2, squared=squared, chunk=self._chunk_rows())

    def _row_weights(self, ctx: _Ctx):
        """Loss weights conf_trf(conf) / norm of rows a..b-1 of ``ctx`` (``w(a, b)``), computed when the kernel
        reaches them: a stored copy would cost as much memory as the confidences (a cheap recomputation)."""
        conf, rows, norm, img = self._stacked_conf, ctx.pred_rows, ctx.norm, ctx.idx + ctx.start

        def w(a: int, b: int) -> torch.Tensor:
            c = conf[a:b] if rows is None else conf.index_select(0, rows[a:b])
            wc = self.conf_trf(c)
            if not self.same_size:  # padded pixels weigh 0 (their raw confidence 0 would give log(0))
                wc = torch.where(self._valid.index_select(0, img[a:b]), wc, torch.zeros_like(wc))
            return wc / norm[a:b, None]
        return w

    @staticmethod
    def _intrinsics_pair(focals: torch.Tensor, pps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """K and K^-1 ``[n, 3, 3]`` built with one stack each (cheap in autograd)."""
        z, o = torch.zeros_like(focals), torch.ones_like(focals)
        cx, cy = pps[:, 0], pps[:, 1]
        K = torch.stack((focals, z, cx, z, focals, cy, z, z, o), dim=1).view(-1, 3, 3)
        inv_f = 1 / focals
        Kinv = torch.stack((inv_f, z, -cx * inv_f, z, inv_f, -cy * inv_f, z, z, o), dim=1).view(-1, 3, 3)
        return K, Kinv

    def _flow_parts(self, ctx: _Ctx, depth, R, T, K, Kinv):
        """Per group of directed pairs (numerator, count) of the flow loss over the pairs of ``ctx``; with the
        original's non-batched pooling (faithful) one group whose numerator is sum(num / count) over the pairs."""
        src, tgt = ctx.fl_src, ctx.fl_tgt
        Rt = R[tgt].transpose(1, 2)
        Hm = K[tgt] @ (Rt @ R[src]) @ Kinv[src]
        kt = (K[tgt] @ (Rt @ (T[src] - T[tgt])[..., None]))[..., 0]  # [D, 3]
        if ctx.fl_ph is None:
            raise RuntimeError("the flow loss needs images of one size")
        disp = 1 / (depth + 1e-6)  # [n, HW]
        if self._per_edge_flow:
            group = torch.zeros_like(src)
            group_rows = (torch.arange(len(src), device=src.device),)
            per_row = "raw" if self.faithful else "guard"  # the original: NaN for a pair without static pixels
        else:
            group, group_rows, per_row = ctx.fl_group, ctx.fl_group_rows, None
        valid = self._flow_valid if ctx.fl_valid else None
        return ego_flow_sum(Hm, kt, disp, src, self._flow_obs, ctx.fl_static, ctx.fl_ph, group=group,
                            group_rows=group_rows, obs_rows=ctx.fl_rows, valid=valid, valid_rows=ctx.fl_rows,
                            per_row=per_row, thre=self.pxl_thre, mse=self.flow_loss_fn == "mse",
                            chunk=self._chunk_rows())

    def _combine_flow(self, ctx: _Ctx, num: torch.Tensor, cnt: torch.Tensor, n_edges: int) -> torch.Tensor:
        """Flow value from per-group parts: pooled per direction group (batched formula), or the original's
        non-batched per-edge pooling summed over edges / E (faithful non-batched mode: ``num`` already holds
        sum(num / count))."""
        if self._per_edge_flow:
            return ctx.fl_factor * num.sum() / n_edges
        guard = not self.faithful
        total = num.new_zeros(())
        for g in range(len(num)):
            total = total + num[g] / (cnt[g].clamp_min(1) if guard else cnt[g])
        return ctx.fl_factor * total

    def _temporal(self, R: torch.Tensor, T: torch.Tensor) -> torch.Tensor:
        """sum_k |R_k^T R_k+1 - I|_F + w |R_k^T (T_k+1 - T_k)| (= inverse(P_k) P_k+1, optimizer.md 5.2)."""
        if R.shape[0] < 2:
            return R.new_zeros(())
        Rt = R[:-1].transpose(1, 2)
        rel_R = Rt @ R[1:]
        rel_t = (Rt @ (T[1:] - T[:-1])[..., None])[..., 0]
        eye = torch.eye(3, device=R.device, dtype=R.dtype)
        # torch's norms have a zero subgradient at 0 (identical consecutive poses); a plain sqrt would give NaN
        rot = torch.linalg.matrix_norm(rel_R - eye)
        trans = torch.linalg.vector_norm(rel_t, dim=1)
        return (rot + self.translation_weight * trans).sum()

    def _depth_prior(self, ctx: _Ctx, depth: torch.Tensor) -> torch.Tensor:
        red = "sum" if self._per_edge_flow else "mean"
        return depth_regularization_si_weighted(depth[:, None], ctx.init_depth[:, None], ctx.dyn[:, None],
                                                faithful=self.faithful, reduction=red)

    def _loss(self, ctx: _Ctx, epoch: int, v: _Vars, terms: bool = False):
        """Total loss (batched formulas) for the problem ``ctx`` given the variables ``v``."""
        X = self._world_points(v.depth, v.R, v.T, v.focals, v.pps, ctx.grid)
        align = self._pair_align(ctx, X, v.M, v.t, v.adapt)
        loss = align
        out = dict(align=align)
        if self.temporal_smoothing_weight > 0 or terms:
            temporal = self._temporal(v.R, v.T)
            out["temporal_unweighted"] = temporal
            if self.temporal_smoothing_weight > 0:
                loss = loss + self.temporal_smoothing_weight * temporal
        flow_gated = align.new_zeros(())
        if ctx.fl_src is not None and (self._flow_active(epoch) or terms) and len(ctx.fl_src):
            K, Kinv = self._intrinsics_pair(v.focals, v.pps)
            num, cnt = self._flow_parts(ctx, v.depth, v.R, v.T, K, Kinv)
            flow = self._combine_flow(ctx, num, cnt, len(ctx.ei))
            out["flow_unweighted_ungated"] = flow
            if self._flow_active(epoch):
                flow_gated = self._gate(flow)
                loss = loss + self.flow_loss_weight * flow_gated
        if self.depth_regularize_weight > 0 and ctx.init_depth is not None:
            dreg = self._depth_prior(ctx, v.depth)
            out["depth_reg"] = dreg
            loss = loss + self.depth_regularize_weight * dreg
        out["total"] = loss
        out["flow_term_as_gated"] = flow_gated
        return (loss, flow_gated, out) if terms else (loss, flow_gated)

    def forward(self, epoch: int = 9999):
        """(total loss, gated unweighted flow value) of the current parameters over all pairs."""
        return self._loss(self._ctx(), epoch, self._variables())

    @torch.no_grad()
    def loss_terms(self, epoch: int = 9999) -> dict[str, float]:
        """Unweighted terms for inspection: align, temporal_unweighted, flow_unweighted_ungated, total, ..."""
        _, _, out = self._loss(self._ctx(), epoch, self._variables(), terms=True)
        return {k: float(v) for k, v in out.items()}

    # ------------------------------------------------------------------------------------------------------
    # non-batched mode
    # ------------------------------------------------------------------------------------------------------
    # The loss kernels already process the pairs in chunks of ``chunk_size`` with only one chunk's intermediates
    # alive, so the non-batched mode (``batchify=False``) shares the batched code path and memory; it differs
    # only by the original's per-edge normalisations in faithful mode (``_per_edge_flow``, ``_make_ctx``,
    # ``_depth_prior``).

    # ------------------------------------------------------------------------------------------------------
    # window-wise mode
    # ------------------------------------------------------------------------------------------------------
    def window_starts(self) -> list[int]:
        """Start frames of the windows (optimizer.md 9.1); validates the window settings."""
        N, ws = self.n_imgs, int(self.window_size)
        if ws < 2:
            raise Monst3rInputError(f"window_size must be at least 2, got {ws}")
        if ws > N:
            raise Monst3rInputError(f"window_size {ws} is larger than the number of frames {N}; use a window of at "
                                    f"most {N} frames (or global alignment)")
        overlap = int(ws * self.window_overlap_ratio)
        stride = ws - overlap
        if stride <= 0:
            raise Monst3rInputError(f"window_overlap_ratio {self.window_overlap_ratio} leaves no new frames per "
                                    "window; use a ratio below 1")
        starts = list(range(0, N - ws + 1, stride))
        if (N - ws) % stride != 0:
            starts.append(N - ws)
        return starts

    def compute_global_alignment(self, init: str | None = None, niter_PnP: int = 10, **kw):
        if self.window_wise:
            return self.compute_window_wise_alignment(init=init, niter_PnP=niter_PnP, **kw)
        return super().compute_global_alignment(init=init, niter_PnP=niter_PnP, **kw)

    def compute_window_wise_alignment(self, init: str | None = None, niter_PnP: int = 10, **kw):
        """Initialise (MST, or from the previous result when given) then optimise window after window."""
        kw.pop("temporal_smoothing_weight", None)
        self.window_starts()  # validate before any work
        with torch.autocast(device_type=self.device.type, enabled=False):
            with self.phase("init"):
                self.initialize(init, niter_PnP=niter_PnP)
            with self.phase("loop"):
                return self._window_loop(**kw)

    def _window_loop(self, lr: float = 0.01, niter: int = 300, schedule: str = "cosine", lr_min: float = 1e-3,
                     max_iters: int | None = None, **unused):
        """Optimise each window's own copies of the parameters (optimizer.md 9.1), then write them back.

        Pair poses are copied from the global ones for every window and not written back, and the pair-scale
        normalisation uses the (constant) global pair poses, as in the original.
        """
        starts = self.window_starts()
        ws = int(self.window_size)
        overlap = int(ws * self.window_overlap_ratio)
        norm = self.get_pw_norm_scale_factor()
        norm = norm.detach() if isinstance(norm, torch.Tensor) else norm
        loss = None
        prev_end = 0
        for w, s in enumerate(starts):
            e = s + ws
            if w == 0:
                opt_start = s + self.n_prev_frames
            elif w == len(starts) - 1:
                opt_start = prev_end
            else:
                opt_start = s + overlap
            opt_start = min(max(opt_start, s), e)
            train_focal = self.im_focals.requires_grad and (not self.shared_focal or (w == 0 and not self.n_prev_frames))
            loss = self._optimize_window(s, e, opt_start, train_focal, norm, lr, niter, schedule, lr_min, w,
                                         max_iters)
            prev_end = e
        return loss

    def _optimize_window(self, s, e, opt_start, train_focal, norm, lr, niter, schedule, lr_min, w_index,
                         max_iters=None):
        ctx = self._make_ctx(range(s, e))
        eids = ctx.edge_ids
        train_depth = self.im_depthmaps.requires_grad
        train_pose = self.im_poses.requires_grad
        d_opt = nn.Parameter(self.im_depthmaps.detach()[opt_start:e].clone(), requires_grad=train_depth)
        p_opt = nn.Parameter(self.im_poses.detach()[opt_start:e].clone(), requires_grad=train_pose)
        pw_opt = nn.Parameter(self.pw_poses.detach()[eids].clone(), requires_grad=self.pw_poses.requires_grad)
        if self.shared_focal:
            f_opt = nn.Parameter(self.im_focals.detach().clone(), requires_grad=train_focal)
        else:
            f_opt = nn.Parameter(self.im_focals.detach()[opt_start:e].clone(), requires_grad=train_focal)
        pp_opt = nn.Parameter(self.im_pp.detach()[opt_start:e].clone(), requires_grad=self.im_pp.requires_grad)
        root = self._root_mask[s:e]
        params = [p for p in (d_opt, p_opt, pw_opt, f_opt, pp_opt) if p.requires_grad]
        if not params:
            return None
        optimizer = make_adam(params, lr)
        tdim = torch.arange(7, device=self.device) >= 4

        def variables() -> _Vars:
            pose_p = torch.cat((self.im_poses.detach()[s:opt_start], p_opt))
            if not self.faithful and bool(root.any()):
                pose_p = torch.where(root[:, None] & tdim, pose_p.detach(), pose_p)
            if self.shared_focal:
                fp = f_opt
            else:
                fp = torch.cat((self.im_focals.detach()[s:opt_start], f_opt))
            adapt = self.get_adaptors()[eids].detach() if self.has_adaptors else None
            return self._make_vars(torch.cat((self.im_depthmaps.detach()[s:opt_start], d_opt)), pose_p, fp,
                                   torch.cat((self.im_pp.detach()[s:opt_start], pp_opt)), self._pp[s:e], pw_opt,
                                   norm, adapt)

        n_run = niter if max_iters is None else min(niter, max_iters)
        rec = LoopRecord(n_run, self.device, d_opt.dtype)  # nothing of an iteration outlives it (see LoopRecord)
        bar = tqdm(total=niter, disable=not self.verbose, desc=f"window {w_index} [{s}, {e})", leave=False)
        try:
            for it in range(n_run):
                cur_lr = get_lr(schedule, it / niter, lr, lr_min)
                for g in optimizer.param_groups:
                    g["lr"] = cur_lr
                optimizer.zero_grad(set_to_none=True)
                loss, flow = self._loss(ctx, it, variables())
                loss.backward()
                optimizer.step()
                rec.put(it, loss, flow, cur_lr)
                del loss, flow
                bar.update()
        finally:
            bar.close()
        with torch.no_grad():
            self.im_depthmaps.data[opt_start:e] = d_opt.data
            self.im_poses.data[opt_start:e] = p_opt.data
            if self.shared_focal:
                self.im_focals.data.copy_(f_opt.data)
            else:
                self.im_focals.data[opt_start:e] = f_opt.data
            self.im_pp.data[opt_start:e] = pp_opt.data
        rec.extend_history(self.history)
        return rec.last_loss()
