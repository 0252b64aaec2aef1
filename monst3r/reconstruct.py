"""The one reconstruction path: views -> pairs -> predictions -> scene (global alignment) -> Reconstruction.

Used by the demo (batched, window-wise and two-frame runs; the GUI through the demo), by streaming (one call per
chunk, :mod:`monst3r.streaming`) and by the pose evaluation (:mod:`monst3r.eval.pose`). What differs between
them is the :class:`monst3r.config.ReconstructConfig` they build from their own arguments.

Steps: :func:`make_view_pairs` -> :func:`predict_pairs` -> :func:`build_scene` -> :func:`align_scene` ->
``clean_pointcloud`` / ``result``.
"""
from __future__ import annotations

import copy
import math
from typing import Callable, Dict, List, Optional, Tuple

import torch

from monst3r.config import AlignerConfig, ReconstructConfig, parse_intrinsics
from monst3r.result import Reconstruction
from monst3r.utils.timing import StageTimer

__all__ = ["DivergedError", "load_flow_network", "make_view_pairs", "predict_pairs", "build_scene", "align_scene",
           "reconstruct"]

Pairs = List[Tuple[Dict, Dict]]


class DivergedError(RuntimeError):
    """The optimisation produced non-finite poses or loss (raised with ``cfg.fail_on_divergence``)."""


def load_flow_network(aligner: AlignerConfig, device: torch.device):
    """The optical-flow network of the optimizer (``aligner.flow_weights``), or None with the flow loss off."""
    if aligner.flow_loss_weight <= 0:
        return None
    from third_party.raft import load_flow_model

    return load_flow_model(aligner.flow_weights, device)


def make_view_pairs(views: List[Dict], cfg: ReconstructConfig) -> Tuple[List[Dict], Pairs]:
    """Symmetrized pairs of the scene graph; a single view is paired with a copy of itself (``idx`` 1).
    Returns ``(views, pairs)``."""
    from monst3r.image_pairs import make_pairs

    if len(views) == 1:
        views = [views[0], copy.deepcopy(views[0])]
        views[1]["idx"] = 1
    pairs = make_pairs(views, scene_graph=cfg.pair_graph(len(views)), prefilter=None, symmetrize=True)
    return views, pairs


def predict_pairs(pairs: Pairs, model, cfg: ReconstructConfig, device: torch.device, verbose: Optional[bool] = None
                  ) -> dict:
    """``inference()`` output of the network on ``pairs`` (shared by a torchrun group with
    ``cfg.shard_inference``; ``inference_distributed`` is plain inference in a single process)."""
    from monst3r.inference import inference, inference_distributed

    run = inference_distributed if cfg.shard_inference else inference
    return run(pairs, model, device, batch_size=cfg.batch_size, verbose=cfg.verbose if verbose is None else verbose,
               dtype=cfg.torch_dtype)


def build_scene(output: dict, n_views: int, n_pairs: int, cfg: ReconstructConfig, device: torch.device,
                prev_video_results: Optional[dict] = None, flow_model=None, flows=None,
                aligner_kw: Optional[dict] = None):
    """The PointCloudOptimizer of the predictions (flows, motion masks and SAM2 are computed here when the flow
    loss is on), with ``cfg.intrinsics`` / ``cfg.fixed_focals`` preset. ``flows``: precomputed
    ``(flow_ij [E,2,H,W], flow_ji [E,2,H,W], valid_i [E,1,H,W], valid_j [E,1,H,W])`` or None."""
    from monst3r.cloud_opt import GlobalAlignerMode, global_aligner

    kw = cfg.aligner.aligner_kwargs()
    if cfg.empty_cache_auto:
        kw["empty_cache"] = n_views >= 80 and n_pairs > 600
    scene = global_aligner(output, device=device, mode=GlobalAlignerMode.PointCloudOptimizer, verbose=cfg.verbose,
                           prev_video_results=prev_video_results, flow_model=flow_model, flows=flows, **kw,
                           **(aligner_kw or {}))
    return scene


def _preset_camera(scene, views: List[Dict], cfg: ReconstructConfig) -> None:
    """Known intrinsics (``--intrinsics``, working-resolution pixels) or focals (``--use_gt_focal``), held fixed."""
    if cfg.fixed_focals is not None:
        scene.preset_focal(cfg.fixed_focals, requires_grad=False)
    K = parse_intrinsics(cfg.intrinsics, views[0]["img"].shape[-1], views[0]["img"].shape[-2])
    if K is not None:
        scene.preset_intrinsics([torch.as_tensor(K, dtype=torch.float32)] * len(views))


def align_scene(scene, cfg: ReconstructConfig):
    """Global (or window-wise) alignment; returns the final loss. Non-finite loss -> :class:`DivergedError` with
    ``cfg.fail_on_divergence``."""
    kw = cfg.aligner.alignment_kwargs()
    if cfg.aligner.window_wise:
        loss = scene.compute_window_wise_alignment(**kw)
    else:
        loss = scene.compute_global_alignment(**kw)
    if cfg.fail_on_divergence and isinstance(loss, float) and not math.isfinite(loss):
        raise DivergedError(f"the global alignment diverged (final loss {loss})")
    return loss


def _check_poses(scene, cfg: ReconstructConfig) -> None:
    if cfg.fail_on_divergence and not torch.isfinite(scene.get_im_poses().detach()).all():
        raise DivergedError("the global alignment produced non-finite camera poses")


def reconstruct(views: List[Dict], model, cfg: ReconstructConfig, *, device: torch.device,
                timer: Optional[StageTimer] = None, prev_video_results: Optional[dict] = None,
                flow_model: Optional[torch.nn.Module] = None, offload_model: bool = True,
                predict: Optional[Callable[[Pairs], dict]] = None,
                flows_fn: Optional[Callable[[Pairs], tuple]] = None, aligner_kw: Optional[dict] = None,
                phase_times: Optional[Dict[str, float]] = None) -> Optional[Reconstruction]:
    """Run inference and global alignment on view dicts (``img [1,3,H,W]``, ...); returns the
    :class:`Reconstruction`, or None on the helper ranks of a sharded (torchrun) demo run.

    predict: optional ``callable(pairs) -> inference()-style output`` used instead of running ``model``
    (tests feed ideal predictions of synthetic scenes through it).
    flows_fn: optional ``callable(pairs) -> (flow_ij, flow_ji, valid_i, valid_j)`` (``[E, 2, H, W]`` /
    ``[E, 1, H, W]``, one row per pair) used instead of running the flow network inside the optimizer.
    flow_model: the flow network (default: :func:`load_flow_network`). aligner_kw: extra ``global_aligner``
    options (e.g. ``sam2_predictor``). prev_video_results: frozen first frames (window-wise continuation).
    offload_model: on CUDA, move the network to the CPU after inference to give its memory to the optimizer
    (the streaming mode and the evaluation keep it, as they need it again).
    phase_times: when given, the optimizer's phase times (``flows``, ``self_masks``, ``sam2``, ``init``, ``loop``;
    seconds) are added to it (the demo's ``timer`` keeps the pipeline stages only)."""
    from monst3r.cloud_opt import GlobalAlignerMode, global_aligner
    from monst3r.runtime import is_main_process

    timer = StageTimer() if timer is None else timer
    views, pairs = make_view_pairs(views, cfg)
    with timer("inference"):
        output = predict(pairs) if predict is not None else predict_pairs(pairs, model, cfg, device)
    if cfg.shard_inference and not is_main_process():
        return None  # multi-process run: the other ranks only share the pair inference
    if device.type == "cuda" and offload_model and model is not None:
        with timer("offload"):
            # the network is not needed any more: give its ~2.3 GB of GPU memory to the optimizer
            model.to("cpu")
            torch.cuda.empty_cache()
    if len(views) == 2:
        with timer("alignment"), torch.enable_grad():
            scene = global_aligner(output, device=device, mode=GlobalAlignerMode.PairViewer, verbose=cfg.verbose)
        _check_poses(scene, cfg)
        if cfg.clean_pair_viewer:
            scene.clean_pointcloud()
        return scene.result()
    with timer("flow+masks"), torch.enable_grad():
        flows = None
        if flows_fn is not None and cfg.aligner.flow_loss_weight > 0:
            flows = flows_fn(pairs)
        elif flow_model is None:
            flow_model = load_flow_network(cfg.aligner, device)
        scene = build_scene(output, len(views), len(pairs), cfg, device, prev_video_results, flow_model, flows,
                            aligner_kw)
        del flow_model, flows
    _preset_camera(scene, views, cfg)
    with timer("optimization"), torch.enable_grad():
        align_scene(scene, cfg)
    _check_poses(scene, cfg)
    with timer("post"):
        if prev_video_results is not None:
            scene.clean_prev_results()
        scene.clean_pointcloud()
        rec = scene.result()
    if phase_times is not None:
        for k, v in getattr(scene, "timings", {}).items():
            phase_times[k] = phase_times.get(k, 0.0) + v
    return rec
