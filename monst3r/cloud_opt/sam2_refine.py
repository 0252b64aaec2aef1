"""SAM2 refinement of per-frame motion masks (the original ``refine_motion_mask_w_sam2``, optimizer.md 7.3).

:func:`refine_motion_masks_with_sam2` runs the two-pass SAM2 video propagation through ``third_party.sam2_adapter``
and is skipped with one warning when the optional ``sam2`` package or its checkpoint is missing.
"""
from __future__ import annotations

import warnings
from contextlib import nullcontext
from pathlib import Path
from typing import List, NamedTuple, Optional, Sequence, Union

import torch

from monst3r.cloud_opt.optical_flow import as_image_tensor

MaskList = Union[torch.Tensor, List[torch.Tensor]]


class Sam2Refinement(NamedTuple):
    """Result of :func:`refine_motion_masks_with_sam2`.

    Attributes:
        masks: the masks to use: ``input | sam2`` per frame (the input masks unchanged when skipped), in the
            input's container type (list of ``[H, W]`` bool tensors or a ``[N, H, W]`` bool tensor).
        sam2_masks: SAM2-only masks (same container type) or None when skipped.
        skipped: True when refinement did not run.
        reason: why it was skipped (None when it ran).
    """

    masks: MaskList
    sam2_masks: Optional[MaskList]
    skipped: bool
    reason: Optional[str]


def refine_motion_masks_with_sam2(imgs: Union[torch.Tensor, Sequence], masks: MaskList,
                                  checkpoint: Union[str, Path, None] = None, config: Optional[str] = None,
                                  device: Union[str, torch.device, None] = None, predictor=None) -> Sam2Refinement:
    """Refine per-frame motion masks with SAM2 video propagation (the original ``refine_motion_mask_w_sam2``).

    Two passes: prompts on odd frames -> keep SAM2's masks of even frames; prompts on even frames -> keep odd
    frames. Each frame's SAM2 mask therefore comes only from its neighbours' prompts; the result is
    ``masks[k] | sam2[k]``.

    Args:
        imgs: ``[N, H, W, 3]`` float RGB in [0, 1] (the optimizer's image store), or a list of ``[H, W, 3]``.
        masks: ``[N, H, W]`` bool tensor or list of N ``[H, W]`` bool tensors (the flow-derived motion masks).
        checkpoint: SAM2.1 checkpoint (default ``third_party/sam2/checkpoints/sam2.1_hiera_large.pt``, relative
            to the working directory, then to the repository root).
        config: SAM2 config name inside the ``sam2`` package (default ``configs/sam2.1/sam2.1_hiera_l.yaml``).
        device: where SAM2 runs (default: the masks' device).
        predictor: an already-built SAM2 video predictor (skips building; also used by tests).

    Returns:
        :class:`Sam2Refinement`. When ``sam2`` is not installed, the checkpoint is missing or there are fewer than
        2 frames, one warning is issued and the input masks are returned with ``skipped=True``.
    """
    from third_party import sam2_adapter

    as_list = not isinstance(masks, torch.Tensor)
    mask_list = [torch.as_tensor(m).bool() for m in masks]
    if device is None:
        device = mask_list[0].device if mask_list else torch.device("cpu")
    device = torch.device(device)

    reason: Optional[str] = None
    if len(mask_list) < 2:
        reason = f"it needs at least 2 frames, got {len(mask_list)}"
    elif predictor is None:
        reason = sam2_adapter.sam2_unavailable_reason()
        ckpt_path = sam2_adapter.resolve_sam2_checkpoint(checkpoint)
        if reason is None and not ckpt_path.is_file():
            reason = f"SAM2 checkpoint not found at {ckpt_path}"
    if reason is not None:
        warnings.warn(
            f"SAM2 mask refinement skipped: {reason}. To enable it install the optional package "
            f"(`pip install {sam2_adapter.SAM2_REQUIREMENT}`) and fetch {sam2_adapter.DEFAULT_SAM2_CHECKPOINT} "
            f"with `bash data/download_ckpt.sh`.", stacklevel=2)
        return Sam2Refinement(masks, None, True, reason)

    frames = as_image_tensor(imgs).permute(0, 3, 1, 2).contiguous().to(device)  # [N, 3, H, W]
    if predictor is None:
        predictor = sam2_adapter.build_video_predictor(config or sam2_adapter.DEFAULT_SAM2_CONFIG, ckpt_path, device)
    autocast = (torch.autocast(device_type="cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext())
    with sam2_adapter.tf32_enabled(device), autocast:
        sam2_np = sam2_adapter.two_pass_refine(predictor, frames, mask_list)
    sam2_masks = [torch.from_numpy(m).to(mk.device) for m, mk in zip(sam2_np, mask_list)]
    union = [mk | s for mk, s in zip(mask_list, sam2_masks)]
    if not as_list:
        return Sam2Refinement(torch.stack(union), torch.stack(sam2_masks), False, None)
    return Sam2Refinement(union, sam2_masks, False, None)
