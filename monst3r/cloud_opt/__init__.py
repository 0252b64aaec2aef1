"""Global alignment of pairwise pointmaps into one dynamic scene (optimizer.md).

Public API, as in the original::

    from monst3r.cloud_opt import global_aligner, GlobalAlignerMode
    scene = global_aligner(output, device=device, mode=GlobalAlignerMode.PointCloudOptimizer, **options)
    loss = scene.compute_global_alignment(init='mst', niter=300, schedule='linear', lr=0.01)
    result = scene.result()          # monst3r.result.Reconstruction

Layout: ``optimizer.py`` (PointCloudOptimizer: parameters, getters, window mode) built on ``base_opt.py``
(BasePCOptimizer: pair buffers, pair poses) with ``scene_inputs.py`` (parsing), ``scene_init.py`` (applies the
values ``init_im_poses.py`` computes), ``presets.py``, ``alignment_loss.py`` (the loss, kernels in
``align_flow_kernels.py``, terms in ``loss_terms.py``), ``adam_loop.py`` (the one optimisation loop) and
``scene_results.py`` (results, writers); the step before optimisation: ``flows_and_masks.py`` (``pair_flows.py``,
``optical_flow.py``, ``self_masks.py``, ``sam2_refine.py``); helpers: ``edges.py``, ``loss_weights.py``,
``lr_schedules.py``, ``padded_rows.py``, ``clean_confidences.py``; ``pair_viewer.py``, ``feed_forward.py``.

Behaviour versus the original's documented bugs (optimizer.md section 14). ``faithful=True`` (constructor option)
reproduces the original where it matters for its results; the default is the corrected behaviour:

1. Root-camera translation frozen by signed_expm1's zero gradient at 0: default freezes the MST root translation
   explicitly and gives every other coordinate the correct gradient (a known pose coordinate that is exactly 0 can
   move); faithful keeps the accidental freeze (needed to match the golden known-poses run).
2. Stale edge key for focals in the MST loop: fixed; faithful reproduces.
3. ``flow_loss_fn='mse'`` crashes in the original: implemented (sum((m est - m obs)^2) / sum(m)).
4. Forward-backward flow validity masks unused: still unused by default (original loss); ``flow_use_validity=True``
   also drops inconsistent pixels.
5. Depth prior weighting dynamic pixels 2x: default ignores dynamic pixels; faithful keeps mask + 1.
6. Non-batched mode normalising differently: default non-batched gives the batched value and gradient (it shares
   the batched code path, whose chunked loss kernels already bound the memory); faithful reproduces the per-edge
   pooling (golden run d).
17. Pair adaptors (``allow_pw_adaptors=True``) now receive the gradient of the alignment term (the fused kernel
   used to drop it).
7. Saved dynamic masks were SAM2-only while the loss used the union: ``Reconstruction.dynamic_masks`` is the union
   (what the loss used); ``result(mask_source='sam2_only')`` / ``save_result(mask_source='sam2_only')`` or a faithful
   scene's ``save_dynamic_masks`` give the original's files.
8. ``frame_%04d.png`` is the RGB frame (as the original's final content); the depth picture goes to the gif,
   normalised instead of wrapping.
9. ``conf_*.npy`` keep -inf after clean-up (compatibility); readers map it to confidence 0.
10. Window mode: settings validated (window larger than the video, no new frames per window -> clear errors);
    per-frame focals work; pair poses are still not written back and the pair-scale factor stays constant
    (as the original, golden run e); continuation accepts edges in any order.
11. ``preset_pose`` disabled pair-scale normalisation always: default only when more than one pose is given.
12. ModularPointCloudOptimizer: not provided (broken in the original).
13. ``init='known_poses'``: default estimates missing focals (Weiszfeld), stores the initial depths and survives a
    PnP failure; faithful keeps max(H, W) and raises.
14. NaN guards: constant motion-error maps and empty flow masks give 0 (values unchanged otherwise).
15. The flow network is chosen explicitly (``sintel_ckpt`` -> 'raft-sintel', else 'searaft').
16. TUM quaternion signs are written as scipy gives them; readers accept q and -q.
"""
from __future__ import annotations

from enum import Enum

import torch

from monst3r.cloud_opt.base_opt import BasePCOptimizer
from monst3r.cloud_opt.feed_forward import feed_forward_reconstruction
from monst3r.cloud_opt.flows_and_masks import flows_and_masks_of_scene
from monst3r.cloud_opt.optimizer import PointCloudOptimizer, check_optimizer_options
from monst3r.cloud_opt.pair_viewer import PairViewer
from monst3r.cloud_opt.scene_inputs import parse_scene
from monst3r.errors import Monst3rInputError


class GlobalAlignerMode(Enum):
    PointCloudOptimizer = "PointCloudOptimizer"
    ModularPointCloudOptimizer = "ModularPointCloudOptimizer"
    PairViewer = "PairViewer"


def global_aligner(output: dict, device: str | torch.device = "cpu",
                   mode: GlobalAlignerMode | str = GlobalAlignerMode.PointCloudOptimizer, **optim_kw):
    """Build the scene for ``mode`` from the dict ``inference()`` returns (view1, view2, pred1, pred2).

    Nothing is optimised here. For the PointCloudOptimizer the network output is parsed once
    (``scene_inputs.parse_scene``), then, with the flow loss on, the step before optimisation runs on it
    (``flows_and_masks.flows_and_masks_of_scene``: optical flows, self motion masks, SAM2), and the optimizer is
    built from both (``parsed=``, ``flows_and_masks=``): it receives the flows and masks instead of building
    networks. ``ModularPointCloudOptimizer`` is broken in the original and not provided: use PointCloudOptimizer
    (its presets freeze parameters).
    """
    if not isinstance(output, dict):
        raise Monst3rInputError("global_aligner expects the dict returned by inference()")
    missing = [k for k in ("view1", "view2", "pred1", "pred2") if k not in output]
    if missing:
        raise Monst3rInputError(f"the network output lacks {missing}; pass the dict returned by inference()")
    view1, view2, pred1, pred2 = (output[k] for k in ("view1", "view2", "pred1", "pred2"))
    mode = GlobalAlignerMode(mode.value if isinstance(mode, GlobalAlignerMode) else mode)
    if mode == GlobalAlignerMode.PointCloudOptimizer:
        check_optimizer_options(**optim_kw)  # before the (possibly long) flows-and-masks step
        parsed = parse_scene(view1, view2, pred1, pred2, optim_kw.get("dynamic_masks"), device)
        step = flows_and_masks_of_scene(parsed, device, **optim_kw)
        net = PointCloudOptimizer(view1, view2, pred1, pred2, device=device, parsed=parsed, flows_and_masks=step,
                                  **optim_kw)
    elif mode == GlobalAlignerMode.PairViewer:
        net = PairViewer(view1, view2, pred1, pred2, device=device, **optim_kw)
    else:
        raise NotImplementedError(f"unknown Optimizer mode {mode}")
    return net.to(device)


__all__ = ["global_aligner", "GlobalAlignerMode", "PointCloudOptimizer", "PairViewer", "BasePCOptimizer",
           "feed_forward_reconstruction"]
