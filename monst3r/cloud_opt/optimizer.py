"""``PointCloudOptimizer``: global alignment of per-frame depth, pose and intrinsics (optimizer.md 4-9).

Parameters (batched layout, also used by the non-batched and window-wise modes):
``im_depthmaps [N, maxHW]`` log-depth, ``im_poses [N, 7]`` (XYZW quaternion + signed-log translation, c2w),
``im_focals [1 | N, 1]`` (focal = exp(p / focal_break)), ``im_pp [N, 2]`` (pp = (W/2, H/2) + 10 p),
``pw_poses [E, 8]`` and ``pw_adaptors [E, 2]`` (base class).

Loss (section 5): pairwise alignment + temporal smoothness + optical-flow consistency on static pixels
(+ optional depth prior), in ``alignment_loss.py``; presets in ``presets.py``; the flows and motion masks come
from the step before optimisation (``flows_and_masks.py``); the Adam loop is ``adam_loop.py``. Modes:
- batched (default): one forward over all pairs (chunked loss kernels, ``align_flow_kernels.py``);
- non-batched (``batchify=False``): the same code path (there is nothing left to save by accumulating
  gradients pair by pair); by default the result equals the batched mode, ``faithful=True`` reproduces the
  original's per-edge normalisation of the flow and depth terms (bug 14.6);
- window-wise (``window_wise=True``): overlapping windows of frames optimised one after the other (section 9.1),
  optionally continuing a previous result (``prev_video_results``).
"""
from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from monst3r.cloud_opt.adam_loop import run_adam
from monst3r.cloud_opt.alignment_loss import AlignmentLoss, DecodedVariables, SubProblem
from monst3r.cloud_opt.base_opt import BasePCOptimizer
from monst3r.cloud_opt.flows_and_masks import FlowsAndMasks, PairPredictions, prepare_flows_and_masks
from monst3r.cloud_opt.loss_weights import check_flow_loss_fn, get_conf_trf, get_dist
from monst3r.cloud_opt.padded_rows import ravel_pad_stack
from monst3r.cloud_opt.pair_flows import PairFlows
from monst3r.cloud_opt.presets import ScenePresets
from monst3r.errors import Monst3rInputError
from monst3r.utils.geometry import xy_grid
from monst3r.utils.timing import StageTimer

log = logging.getLogger(__name__)


def check_optimizer_options(dist: str = "l1", conf: str = "log", flow_loss_fn: str = "smooth_l1",
                            **unused: Any) -> None:
    """ValueError for a bad ``dist``, ``conf`` or ``flow_loss_fn`` option: the constructors' own checks, which
    ``global_aligner`` runs before the flows-and-masks step."""
    get_dist(dist)
    get_conf_trf(conf)
    check_flow_loss_fn(flow_loss_fn)


class PointCloudOptimizer(ScenePresets, AlignmentLoss, BasePCOptimizer):
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
    default: a per-device pixel budget, see ``align_flow_kernels.CHUNK_PIXELS``);
    ``niter_PnP_pairs`` (RANSAC iterations of the motion-mask pair views, 100); ``faithful`` (see base class);
    ``flows_and_masks``: the result of the step before optimisation (``flows_and_masks.flows_and_masks_of_scene``,
    as ``global_aligner`` computes it): used as given, the flow / SAM2 options above are then not read and no
    network is built; without it (and with the flow loss on) the optimizer runs that step itself.
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
                 niter_PnP_pairs: int = 100, sam2_predictor=None, flows_and_masks: FlowsAndMasks | None = None,
                 **kw: Any):
        super().__init__(*args, **kw)
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
        self.flow_loss_fn = check_flow_loss_fn(flow_loss_fn)
        self.window_wise = window_wise
        self.batchify = batchify and not window_wise
        self.window_size = window_size
        self.window_overlap_ratio = window_overlap_ratio
        self.chunk_size = chunk_size
        self.sam2_status = "off"
        self.sam2_dynamic_masks = None
        self.init_depthmaps: list[torch.Tensor] | None = None

        self._init_parameters()

        # optical flow, motion masks: computed by the step before optimisation (flows_and_masks.py)
        self.pair_flows = PairFlows()
        if self.flow_loss_weight > 0:
            if not self.same_size:
                log.warning("images have different sizes: the optical-flow loss and the self motion masks need "
                            "equal sizes and are disabled")
                self.flow_loss_weight = 0.0
            elif flows_and_masks is not None:  # computed before the optimizer (global_aligner)
                self._apply_flows_and_masks(flows_and_masks)
            else:  # constructed directly: the same step, run here
                self._apply_flows_and_masks(prepare_flows_and_masks(
                    self._pair_predictions(), self.device, StageTimer(self.device, self.timings), flows=flows,
                    flow_model=flow_model, flow_checkpoint=flow_checkpoint, sintel_ckpt=sintel_ckpt,
                    use_self_mask=use_self_mask, sam2_mask_refine=sam2_mask_refine,
                    motion_mask_thre=motion_mask_thre, min_conf_thr=self.min_conf_thr,
                    niter_PnP_pairs=niter_PnP_pairs, faithful=self.faithful, sam2_checkpoint=sam2_checkpoint,
                    sam2_config=sam2_config, sam2_predictor=sam2_predictor))
        elif flows is not None:
            self.pair_flows = PairFlows.from_user(flows, self.edges, self.imshapes[0], self.device)

        # continuation of a previous window-wise result
        self.n_prev_frames = 0
        self._prev_cleaned = False
        if prev_video_results is not None:
            self._preset_prev_results(prev_video_results)
        self._full_ctx: SubProblem | None = None

    def _init_parameters(self) -> None:
        """Random parameters (as the original) and the constant buffers: principal-point base ``[N, 2]``, pixel
        grids ``[N, 2, maxHW]``, gauge-anchor mask ``[N]``."""
        N, A, dev = self.n_imgs, self.max_area, self.device
        self.im_depthmaps = nn.Parameter(torch.randn(N, A, device=dev) / 10 - 3)
        self.im_poses = nn.Parameter(self.rand_pose((N, self.POSE_DIM)).float().to(dev))
        default_focals = torch.tensor([self.focal_break * np.log(max(H, W)) for H, W in self.imshapes],
                                      dtype=torch.float32, device=dev)
        self.im_focals = nn.Parameter(default_focals[:1].clone().view(1, 1) if self.shared_focal
                                      else default_focals.view(N, 1).clone())
        self.im_pp = nn.Parameter(torch.zeros(N, 2, device=dev))
        self.im_pp.requires_grad_(self.optimize_pp)
        self.register_buffer("_pp", torch.tensor([(W / 2, H / 2) for H, W in self.imshapes],
                                                 dtype=torch.float32, device=dev), persistent=False)
        grids = [xy_grid(W, H, device=dev, dtype=torch.float32).reshape(-1, 2) for H, W in self.imshapes]
        # pixel grids, channels-first [N, 2, maxHW] (zero padded)
        self.register_buffer("_grid", ravel_pad_stack(grids, A, 1).to(dev).transpose(1, 2).contiguous(),
                             persistent=False)
        self.register_buffer("_root_mask", torch.zeros(N, dtype=torch.bool, device=dev), persistent=False)

    # ------------------------------------------------------------------------------------------------------
    # flows and masks
    # ------------------------------------------------------------------------------------------------------
    def _pair_predictions(self) -> PairPredictions:
        """The inputs of the step before optimisation (images of one size)."""
        return PairPredictions.from_buffers(self.edges, self.imshapes[0], self._pred_t, self._stacked_conf,
                                            self._imgs, self._dyn, self.user_dynamic_masks, self.is_symmetrized)

    @torch.no_grad()
    def _apply_flows_and_masks(self, res: FlowsAndMasks) -> None:
        for k, v in res.timings.items():
            self.timings[k] = self.timings.get(k, 0.0) + v
        self.pair_flows = res.flows
        if res.masks is not None:
            self._dyn.copy_(res.masks.reshape(self.n_imgs, -1))
        if res.mask_source is not None:
            self.mask_source = res.mask_source
        self.sam2_status = res.sam2_status
        if res.sam2_masks is not None:
            self.sam2_dynamic_masks = res.sam2_masks

    # the flows, as attributes of the original (see pair_flows.py for the layout)
    flow_ij = property(lambda self: self.pair_flows.flow_ij, doc="``[E, 2, H, W]`` flow i -> j of each edge")
    flow_ji = property(lambda self: self.pair_flows.flow_ji, doc="``[E, 2, H, W]`` flow j -> i of each edge")
    flow_valid_mask_i = property(lambda self: self.pair_flows.flow_valid_mask_i, doc="``[E, 1, H, W]`` bool")
    flow_valid_mask_j = property(lambda self: self.pair_flows.flow_valid_mask_j, doc="``[E, 1, H, W]`` bool")
    _flow_ji = property(lambda self: self.pair_flows.stored_flow_ji)
    _flow_rev = property(lambda self: self.pair_flows.rev)
    _flow_obs = property(lambda self: self.pair_flows.obs)
    _flow_valid = property(lambda self: self.pair_flows.valid)

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
    # initialisation hooks
    # ------------------------------------------------------------------------------------------------------
    def initialize(self, init: str | None, niter_PnP: int = 10):
        self._full_ctx = None
        if init in ("msp", "mst") and self.n_prev_frames:
            self._root_mask.zero_()
            return self._init_from_previous_result(self.n_prev_frames, niter_PnP=niter_PnP)
        if init in ("msp", "mst"):
            trav = self._init_minimum_spanning_tree(niter_PnP=niter_PnP, return_traversal=True)
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
        tdim = torch.arange(7, device=self.device) >= 4

        def variables() -> DecodedVariables:
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

        def step(it: int):
            loss, flow = self._loss(ctx, it, variables())
            loss.backward()
            return loss, flow

        last = run_adam(params, step, self.history, lr=lr, niter=niter, schedule=schedule, lr_min=lr_min,
                        max_iters=max_iters, verbose=self.verbose, desc=f"window {w_index} [{s}, {e})")
        with torch.no_grad():
            self.im_depthmaps.data[opt_start:e] = d_opt.data
            self.im_poses.data[opt_start:e] = p_opt.data
            if self.shared_focal:
                self.im_focals.data.copy_(f_opt.data)
            else:
                self.im_focals.data[opt_start:e] = f_opt.data
            self.im_pp.data[opt_start:e] = pp_opt.data
        return last
