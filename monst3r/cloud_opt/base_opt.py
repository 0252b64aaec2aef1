"""State shared by all global-alignment modes (optimizer.md section 3): ``BasePCOptimizer``.

Parsing of the network output: ``scene_inputs.py``; results and writers: ``scene_results.py``; the optimisation
loop: ``adam_loop.py``; initialisations: ``scene_init.py`` (applies what ``init_im_poses.py`` computes).

Data layout: per-edge predictions and confidences are stacked once into padded buffers (``[E, maxHW, ...]``,
each image raveled row-major and zero padded to the largest area), so that the whole scene moves with
``.to(device)`` and the loss is computed for all pairs at once. Per-edge / per-image views keyed like the
original (``pred_i["i_j"]``, ``im_conf[k]``) are exposed as views into these buffers.
"""
from __future__ import annotations

import logging
import math
from typing import Any

import roma
import torch
import torch.nn as nn

from monst3r.cloud_opt.adam_loop import global_alignment_loop
from monst3r.cloud_opt.align_flow_kernels import quat_param_to_rotmat_fast, signed_expm1_fn
from monst3r.cloud_opt.edges import edge_str
from monst3r.cloud_opt.loss_weights import get_conf_trf, get_dist
from monst3r.cloud_opt.scene_inputs import ParsedScene, parse_scene
from monst3r.cloud_opt.scene_init import SceneInit
from monst3r.cloud_opt.scene_results import SceneResults
from monst3r.utils.geometry import intrinsics_from_focal_pp, signed_log1p
from monst3r.utils.timing import StageTimer

log = logging.getLogger(__name__)


def edge_rows(buffer: str, side: int, doc: str) -> property:
    """Property: the view-1 (``side`` 0: rows ``[:E]``) or view-2 (1: rows ``[E:]``) half of the ``[2E, ...]``
    buffer attribute ``buffer`` (a view, no copy)."""
    def rows(self) -> torch.Tensor:
        buf = getattr(self, buffer)
        return buf[:self.n_edges] if side == 0 else buf[self.n_edges:]
    return property(rows, doc=doc)


def edge_views(name: str, rows: str, side: int, channels_first: bool, doc: str) -> property:
    """Property: ``{"i_j": view}`` of the rows attribute ``rows`` per edge, at the size of image i (``side`` 0) or
    j (1), keyed like the original (built once, cached under ``name``)."""
    return property(lambda self: self._edge_dict(name, getattr(self, rows), side, channels_first=channels_first),
                    doc=doc)


def image_views(buffer: str, doc: str) -> property:
    """Property: the list of ``[H, W, ...]`` views of each image's row of the ``[N, maxHW, ...]`` buffer attribute
    ``buffer``."""
    def views(self) -> list[torch.Tensor]:
        buf = getattr(self, buffer)
        return [self._unravel(buf[k], k) for k in range(self.n_imgs)]
    return property(views, doc=doc)


class BasePCOptimizer(SceneInit, SceneResults, nn.Module):
    """Common state of the global aligners: pairwise predictions, confidences, pair poses.

    Args (defaults of the original): ``dist`` 'l1' (Euclidean distance) or 'l2'; ``conf`` transform of the
    confidences into loss weights ('log'); ``min_conf_thr`` 3 (raw confidence threshold for masks and PnP);
    ``thr_for_init_conf``: threshold the initial instead of the current confidences in ``get_masks``;
    ``base_scale`` 0.5 (geometric mean of the pair scales); ``allow_pw_adaptors``; ``pw_break`` 20;
    ``rand_pose`` initial pose sampler; ``verbose``: progress bars.
    Additions: ``device`` (everything is built there), ``faithful`` (reproduce the original's documented
    bugs, optimizer.md section 14; default False = corrected behaviour, see each use),
    ``dynamic_masks`` (``[N, H, W]`` bool, user-supplied moving-object masks that replace the views' masks),
    ``parsed`` (the views and predictions already parsed by ``scene_inputs.parse_scene`` on ``device``, as
    ``global_aligner`` does before the flows-and-masks step; they are then not read again).
    """

    has_im_poses = False

    def __init__(self, view1: dict, view2: dict, pred1: dict, pred2: dict, *, dist: str = "l1", conf: str = "log",
                 min_conf_thr: float = 3, thr_for_init_conf: bool = False, base_scale: float = 0.5,
                 allow_pw_adaptors: bool = False, pw_break: float = 20, rand_pose=torch.randn,
                 empty_cache: bool = False, verbose: bool = True, faithful: bool = False,
                 device: str | torch.device | None = None, dynamic_masks=None, parsed: ParsedScene | None = None,
                 **unused: Any):
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
        self.dist = get_dist(dist)
        self.base_scale = base_scale
        self.pw_break = pw_break
        self.norm_pw_scale = True
        self.rand_pose = rand_pose
        self._cache: dict[str, Any] = {}
        self.history: dict[str, list] = dict(loss=[], flow=[], lr=[])
        self.timings: dict[str, float] = {}

        # the network output, parsed here unless global_aligner already did (before the flows-and-masks step)
        self._adopt(parsed if parsed is not None else parse_scene(view1, view2, pred1, pred2, dynamic_masks,
                                                                   self.device))

        E = self.n_edges
        self.pw_poses = nn.Parameter(rand_pose((E, 1 + self.POSE_DIM)).float().to(self.device))
        self.pw_adaptors = nn.Parameter(torch.zeros((E, 2), device=self.device))
        self.pw_adaptors.requires_grad_(allow_pw_adaptors)
        self.has_adaptors = allow_pw_adaptors

    POSE_DIM = 7

    # ------------------------------------------------------------------------------------------------------
    # the parsed network output (scene_inputs.parse_scene)
    # ------------------------------------------------------------------------------------------------------
    def _adopt(self, parsed: ParsedScene) -> None:
        """Take over the buffers of the parsed network output (no copies; see the module docstring): stacked
        predictions ``[2E, 3, maxHW]`` / confidences ``[2E, maxHW]`` (view-1 rows, then view-2 rows), edge indices
        and areas, the valid-pixel mask, per-image confidences, images ``[N, maxHW, 3]``, dynamic masks
        ``[N, maxHW]`` (user's, views', or none), camera poses and paths."""
        self.edges = parsed.edges
        self.n_imgs = parsed.n_imgs
        self.is_symmetrized = parsed.is_symmetrized
        self.imshapes: list[tuple[int, int]] = parsed.imshapes
        self.max_area = A = parsed.max_area
        self.same_size = parsed.same_size
        dev = self.device
        self.register_buffer("_ei", parsed.ei, persistent=False)
        self.register_buffer("_ej", parsed.ej, persistent=False)
        # channels-first [2E, 3, maxHW]: the layout the fused loss kernel wants, one call for both views. This buffer
        # and the confidences are the only per-pair copies of the predictions (every per-edge accessor below is a
        # view)
        self.register_buffer("_pred_t", parsed.pred_t, persistent=False)
        self.register_buffer("_stacked_conf", parsed.conf, persistent=False)
        areas = torch.tensor([h * w for h, w in self.imshapes], dtype=torch.float32)
        ei, ej = parsed.ei.cpu(), parsed.ej.cpu()
        self.total_area_i = float(areas[ei].sum())
        self.total_area_j = float(areas[ej].sum())
        self.register_buffer("_edge_area_i", areas[ei].to(dev), persistent=False)
        self.register_buffer("_edge_area_j", areas[ej].to(dev), persistent=False)
        # valid-pixel mask of the padded layout [N, maxHW]
        valid = torch.zeros(self.n_imgs, A, dtype=torch.bool)
        for k, (h, w) in enumerate(self.imshapes):
            valid[k, :h * w] = True
        self.register_buffer("_valid", valid.to(dev), persistent=False)
        self.register_buffer("_im_conf", parsed.im_conf, persistent=False)
        self.register_buffer("_init_conf", parsed.im_conf.clone(), persistent=False)
        self.img_pathes = parsed.paths
        self.register_buffer("_imgs", parsed.imgs, persistent=False)
        self.has_images = parsed.has_images
        self.has_view_masks = parsed.has_view_masks
        self.mask_source = parsed.mask_source
        self.register_buffer("_dyn", parsed.dyn, persistent=False)
        self.user_dynamic_masks = parsed.user_masks
        self.camera_poses = parsed.camera_poses

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

    # views of the view-1 / view-2 rows of the [2E, ...] buffers
    _pred_i_t = edge_rows("_pred_t", 0, "``[E, 3, maxHW]`` view-1 points, channels first")
    _pred_j_t = edge_rows("_pred_t", 1, "``[E, 3, maxHW]`` view-2 points (in camera i), channels first")
    _stacked_conf_i = edge_rows("_stacked_conf", 0, "``[E, maxHW]`` raw view-1 confidences (zero padded)")
    _stacked_conf_j = edge_rows("_stacked_conf", 1, "``[E, maxHW]`` raw view-2 confidences (zero padded)")
    _stacked_pred_i = property(lambda self: self._pred_i_t.transpose(1, 2),
                               doc="``[E, maxHW, 3]`` view-1 points (a strided view of the channels-first buffer)")
    _stacked_pred_j = property(lambda self: self._pred_j_t.transpose(1, 2),
                               doc="``[E, maxHW, 3]`` view-2 points (a strided view of the channels-first buffer)")

    def _edge_dict(self, name: str, stacked: torch.Tensor, side: int, channels_first: bool = False
                   ) -> dict[str, torch.Tensor]:
        key = f"dict_{name}"
        if key not in self._cache:
            unravel = self._unravel_t if channels_first else self._unravel
            self._cache[key] = {edge_str(i, j): unravel(stacked[e], (i, j)[side])
                                for e, (i, j) in enumerate(self.edges)}
        return self._cache[key]

    pred_i = edge_views("pred_i", "_pred_i_t", 0, True, '``{"i_j": [H, W, 3]}`` view-1 points (camera-i frame)')
    pred_j = edge_views("pred_j", "_pred_j_t", 1, True, '``{"i_j": [H, W, 3]}`` view-2 points in camera i')
    conf_i = edge_views("conf_i", "_stacked_conf_i", 0, False, '``{"i_j": [H, W]}`` raw view-1 confidences')
    conf_j = edge_views("conf_j", "_stacked_conf_j", 1, False, '``{"i_j": [H, W]}`` raw view-2 confidences')

    @property
    def n_edges(self) -> int:
        return len(self.edges)

    im_conf = image_views("_im_conf", "Per-image ``[H, W]`` max raw confidence (views: in-place edits change the "
                                      "scene)")
    init_conf_maps = image_views("_init_conf", "Per-image ``[H, W]`` max raw confidence before any clean-up")
    imgs = image_views("_imgs", "Per-image ``[H, W, 3]`` RGB in [0, 1]")
    dynamic_masks = image_views("_dyn", "Per-image ``[H, W]`` bool moving-object masks (those the flow loss ignores)")

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

    def phase(self, name: str):
        """``with scene.phase(name):`` accumulates the wall time of a block in ``self.timings[name]`` (seconds; CUDA
        synchronised at both ends). Phases: 'flows', 'self_masks', 'sam2' (construction), 'init', 'loop'."""
        return StageTimer(self.device, self.timings)(name)


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
        from monst3r.cloud_opt.clean_confidences import clean_confidences
        K = self.get_intrinsics().detach()
        c2w = self.get_im_poses().detach()
        depth = [d.detach() for d in self.get_depthmaps()]
        res = clean_confidences(self.im_conf, K, c2w, depth, tol=tol, bad_conf=bad_conf)
        for k, r in enumerate(res):
            self.im_conf[k].copy_(r)
        return self


__all__ = ["BasePCOptimizer"]
