"""The step before optimisation: optical flows of the pairs, self motion masks and their SAM2 refinement
(optimizer.md section 7).

:func:`prepare_flows_and_masks` takes the pair predictions of a scene and returns the :class:`PairFlows` and the
per-frame dynamic masks the optimizer uses; the flow network (``flow_model`` or ``flow_checkpoint`` /
``sintel_ckpt``) and the SAM2 predictor are built here, never by the optimizer. ``global_aligner`` runs it
(:func:`flows_and_masks_of_scene`) on the parsed network output, before building the optimizer, and hands the
result over (``PointCloudOptimizer(..., flows_and_masks=...)``); a ``PointCloudOptimizer`` constructed directly
runs the same step itself. Options are the original's (``flows``, ``flow_model``, ``flow_checkpoint``,
``sintel_ckpt``, ``use_self_mask``, ``sam2_mask_refine``, ``sam2_checkpoint``, ``sam2_config``,
``sam2_predictor``, ...).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Sequence

import torch

from monst3r.cloud_opt.pair_flows import PairFlows
from monst3r.cloud_opt.sam2_refine import refine_motion_masks_with_sam2
from monst3r.cloud_opt.scene_inputs import ParsedScene
from monst3r.cloud_opt.self_masks import motion_masks_from_pairs
from monst3r.errors import Monst3rInputError
from monst3r.utils.timing import StageTimer

log = logging.getLogger(__name__)

DEFAULT_SEARAFT_CKPT = "searaft"        # third_party.raft name of Tartan-C-T-TSKH-spring540x960-M.pth
DEFAULT_RAFT_SINTEL_CKPT = "raft-sintel"  # classic RAFT, raft-sintel.pth (sintel_ckpt=True)


@dataclass
class PairPredictions:
    """What the step reads of a scene (E edges, N images of one size H x W).

    pred_i / pred_j: ``[E, H, W, 3]`` view-1 / view-2 points in camera i; conf_i / conf_j: ``[E, H, W]`` raw
    confidences; imgs: ``[N, H, W, 3]`` RGB in [0, 1]; masks: ``[N, H, W]`` bool current dynamic masks (views' or
    user's); user_masks: the masks were given by the user (no self masks are computed then).
    """
    edges: Sequence[tuple[int, int]]
    pred_i: torch.Tensor
    pred_j: torch.Tensor
    conf_i: torch.Tensor
    conf_j: torch.Tensor
    imgs: torch.Tensor
    masks: torch.Tensor
    user_masks: bool
    symmetrized: bool

    @classmethod
    def from_buffers(cls, edges: Sequence[tuple[int, int]], shape: tuple[int, int], pred_t: torch.Tensor,
                     conf: torch.Tensor, imgs: torch.Tensor, dyn: torch.Tensor, user_masks: bool,
                     symmetrized: bool) -> "PairPredictions":
        """Views (no copies) of the scene's padded buffers (``scene_inputs.ParsedScene``, images of one size
        ``shape`` = (H, W)): pred_t ``[2E, 3, HW]``, conf ``[2E, HW]``, imgs ``[N, HW, 3]``, dyn ``[N, HW]``."""
        H, W = shape
        E, N = len(edges), len(imgs)
        return cls(edges=edges, pred_i=pred_t[:E].transpose(1, 2).unflatten(1, (H, W)),
                   pred_j=pred_t[E:].transpose(1, 2).unflatten(1, (H, W)), conf_i=conf[:E].reshape(E, H, W),
                   conf_j=conf[E:].reshape(E, H, W), imgs=imgs.reshape(N, H, W, 3), masks=dyn.reshape(N, H, W),
                   user_masks=user_masks, symmetrized=symmetrized)


@dataclass
class FlowsAndMasks:
    """Result of the step: ``flows``; ``masks`` ``[N, H, W]`` bool the loss uses (None: keep the input masks);
    ``mask_source`` ('self' or None: unchanged); ``sam2_masks`` (list of N ``[H, W]`` bool, SAM2 only),
    ``sam2_status`` ('off', 'refined', 'skipped: <reason>') and ``timings`` (seconds of the phases 'flows',
    'self_masks', 'sam2' when the step ran outside the optimizer; added to its ``timings``)."""
    flows: PairFlows
    masks: torch.Tensor | None = None
    mask_source: str | None = None
    sam2_masks: list | None = None
    sam2_status: str = "off"
    timings: dict = field(default_factory=dict)


def load_pair_flows(p: PairPredictions, device: torch.device, flows=None, flow_model=None,
                    flow_checkpoint: str | None = None, sintel_ckpt: bool = False) -> PairFlows:
    """The given ``flows`` (validated), or the flow network's (``flow_model``, else loaded from ``flow_checkpoint``
    or the default: 'raft-sintel' when ``sintel_ckpt`` else 'searaft', bug 14.15)."""
    if flows is not None:
        return PairFlows.from_user(flows, p.edges, tuple(p.imgs.shape[1:3]), device)
    if flow_model is None:
        from third_party.raft import load_flow_model
        name = flow_checkpoint or (DEFAULT_RAFT_SINTEL_CKPT if sintel_ckpt else DEFAULT_SEARAFT_CKPT)
        flow_model = load_flow_model(name, device)
    return PairFlows.from_network(flow_model, p.imgs, p.edges, device)


def self_motion_masks(p: PairPredictions, flows: PairFlows, motion_mask_thre: float, min_conf_thr: float,
                      niter_PnP_pairs: int, faithful: bool) -> torch.Tensor:
    """``[N, H, W]`` bool masks of the pixels whose flow disagrees with the ego flow (optimizer.md 7.2)."""
    if not p.symmetrized:
        raise Monst3rInputError("self motion masks (use_self_mask=True) need a symmetrized pair graph; "
                                "build the pairs with symmetrize=True or pass dynamic_masks")
    return motion_masks_from_pairs(p.pred_i, p.pred_j, p.conf_i, p.conf_j, p.edges, flows.flow_ij,
                                   flows.stored_flow_ji, len(p.imgs), motion_mask_thre=motion_mask_thre,
                                   min_conf_thr=min_conf_thr, niter_PnP=niter_PnP_pairs, faithful=faithful)


def sam2_refined_masks(imgs: torch.Tensor, masks: torch.Tensor, device: torch.device, checkpoint=None, config=None,
                       predictor=None) -> tuple[torch.Tensor | None, str]:
    """(SAM2-only masks ``[N, H, W]`` bool or None, status) of ``masks`` ``[N, H, W]`` (optimizer.md 7.3); skipped
    with a warning when SAM2 or its checkpoint is unavailable."""
    N, H, W = masks.shape
    try:
        extra = {} if predictor is None else dict(predictor=predictor)
        res = refine_motion_masks_with_sam2(imgs, masks, checkpoint=checkpoint, config=config, device=device,
                                            **extra)
    except (ImportError, FileNotFoundError, RuntimeError) as err:
        log.warning("SAM2 mask refinement skipped: %s", err)
        return None, f"skipped: {err}"
    if res.skipped:
        return None, f"skipped: {res.reason}"
    sam2_only = res.sam2_masks
    sam2_only = torch.stack([torch.as_tensor(m) for m in sam2_only]) if isinstance(sam2_only, (list, tuple)) \
        else torch.as_tensor(sam2_only)
    return sam2_only.bool().to(device).reshape(N, H, W), "refined"


def prepare_flows_and_masks(p: PairPredictions, device: torch.device, timer: StageTimer, *, flows=None,
                            flow_model=None, flow_checkpoint: str | None = None, sintel_ckpt: bool = False,
                            use_self_mask: bool = False, sam2_mask_refine: bool = True,
                            motion_mask_thre: float = 0.35, min_conf_thr: float = 3, niter_PnP_pairs: int = 100,
                            faithful: bool = False, sam2_checkpoint=None, sam2_config=None,
                            sam2_predictor=None) -> FlowsAndMasks:
    """Flows, then self masks (``use_self_mask`` and no user masks), then the SAM2 union (``sam2_mask_refine``);
    the phases are timed in ``timer`` as 'flows', 'self_masks' and 'sam2'."""
    with timer("flows"):
        out = FlowsAndMasks(load_pair_flows(p, device, flows, flow_model, flow_checkpoint, sintel_ckpt))
    del flow_model
    masks = p.masks
    with timer("self_masks"):
        if use_self_mask and not p.user_masks:
            masks = self_motion_masks(p, out.flows, motion_mask_thre, min_conf_thr, niter_PnP_pairs, faithful)
            masks = out.masks = masks.to(device=p.masks.device, dtype=torch.bool).reshape(p.masks.shape)
            out.mask_source = "self"
    if sam2_mask_refine:
        with timer("sam2"):
            sam2_only, out.sam2_status = sam2_refined_masks(p.imgs, masks, device, sam2_checkpoint, sam2_config,
                                                            sam2_predictor)
            if sam2_only is not None:
                out.sam2_masks = list(sam2_only.unbind(0))
                out.masks = masks | sam2_only  # the loss uses the union (optimizer.md 7.3)
    return out


#: options of ``global_aligner`` / ``PointCloudOptimizer`` that the step reads (keyword names of
#: :func:`prepare_flows_and_masks`, whose defaults are the optimizer's)
STEP_OPTIONS = ("flows", "flow_model", "flow_checkpoint", "sintel_ckpt", "use_self_mask", "sam2_mask_refine",
                "motion_mask_thre", "min_conf_thr", "niter_PnP_pairs", "faithful", "sam2_checkpoint", "sam2_config",
                "sam2_predictor")


def flows_and_masks_of_scene(scene: ParsedScene, device: torch.device | str, **optim_kw) -> FlowsAndMasks | None:
    """The step before optimisation on a parsed scene, as ``global_aligner`` runs it before building the
    optimizer: None when the optimizer would not run it (flow loss off, or images of different sizes: the
    optimizer then disables the flow loss with a warning). ``optim_kw``: the optimizer's options (those of
    :data:`STEP_OPTIONS` are read, the others ignored); the phase times go to the result's ``timings``."""
    if float(optim_kw.get("flow_loss_weight", 0.0)) <= 0 or not scene.same_size:
        return None
    device = torch.device(device)
    p = PairPredictions.from_buffers(scene.edges, scene.imshapes[0], scene.pred_t, scene.conf, scene.imgs,
                                     scene.dyn, scene.user_masks, scene.is_symmetrized)
    opts = {k: optim_kw[k] for k in STEP_OPTIONS if k in optim_kw}
    if "faithful" in opts:
        opts["faithful"] = bool(opts["faithful"])
    timings: dict = {}
    out = prepare_flows_and_masks(p, device, StageTimer(device, timings), **opts)
    out.timings = timings
    return out
