"""Optical flow between image pairs and its forward-backward validity (optimizer.md section 7).

The step before optimisation (``flows_and_masks.py``) uses these when ``flow_loss_weight > 0``:

* :func:`compute_pair_flows` -- forward/backward flow of every edge with a SEA-RAFT/RAFT network
  (``third_party/raft``; load it with ``third_party.raft.load_flow_model``), as the original ``get_flow``.
* :func:`flow_validity_mask` -- the original ``OccMask(th=3.0)`` forward-backward check (computed, not used by
  any loss in the original).

SAM2 refinement lives in ``sam2_refine.py``, the motion masks from ego flow in ``self_masks.py``.
"""
from __future__ import annotations

import logging
from typing import Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

logger = logging.getLogger(__name__)

Edge = Tuple[int, int]


def _model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")


def as_image_tensor(imgs: Union[torch.Tensor, Sequence]) -> torch.Tensor:
    """``imgs`` ([N, H, W, 3] tensor, or a list of [H, W, 3] arrays/tensors) -> float32 tensor [N, H, W, 3]."""
    if isinstance(imgs, torch.Tensor):
        return imgs.float()
    return torch.stack([torch.as_tensor(np.asarray(im) if not isinstance(im, torch.Tensor) else im) for im in imgs]).float()


@torch.no_grad()
def compute_pair_flows(flow_model: nn.Module, imgs: Union[torch.Tensor, Sequence], edges: Sequence[Edge],
                       chunk_size: int = 12, iters: int = 20
                       ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Forward and backward optical flow for every edge, as the original ``get_flow``.

    Args:
        flow_model: SEA-RAFT or RAFT (``third_party.raft``) in eval mode; it runs on its own device, which is also
            the device of the outputs.
        imgs: the optimizer's image store, float RGB in [0, 1], ``[N, H, W, 3]`` (or a list of ``[H, W, 3]``);
            multiplied by 255 before the network, as in the original.
        edges: ordered pairs ``(i, j)``; flow_ij of edge e maps pixels of image i into image j.
        chunk_size: pairs per chunk (12 in the original); each chunk is one network call of ``2 * chunk_size``
            items (both directions; the original makes one call per direction).
        iters: refinement iterations (MonST3R uses 20).

    Returns:
        ``flow_ij [E, 2, H, W]``, ``flow_ji [E, 2, H, W]`` (float32 pixels, channel 0 = x, 1 = y),
        ``valid_i [E, 1, H, W]`` bool = ``flow_validity_mask(flow_ij, flow_ji)`` and
        ``valid_j [E, 1, H, W]`` bool = ``flow_validity_mask(flow_ji, flow_ij)``.
    """
    device = _model_device(flow_model)
    images = as_image_tensor(imgs)
    n, h, w, _ = images.shape
    if len(edges) == 0:
        empty = torch.zeros(0, 2, h, w, device=device)
        mask = torch.zeros(0, 1, h, w, dtype=torch.bool, device=device)
        return empty, empty.clone(), mask, mask.clone()
    ei = torch.tensor([e[0] for e in edges], dtype=torch.long)
    ej = torch.tensor([e[1] for e in edges], dtype=torch.long)
    if int(torch.cat([ei, ej]).min()) < 0 or int(torch.cat([ei, ej]).max()) >= n:
        raise IndexError(f"edge index out of range for {n} images")
    nchw = images.permute(0, 3, 1, 2)  # [N, 3, H, W]
    flows_ij, flows_ji = [], []
    from tqdm.auto import tqdm

    # progress bar on interactive terminals only (disable=None); TQDM_DISABLE=1 silences it everywhere
    for start in tqdm(range(0, len(edges), chunk_size), desc="optical flow", unit="chunk", disable=None,
                      leave=False):
        img_i = (nchw[ei[start:start + chunk_size]] * 255).to(device)
        img_j = (nchw[ej[start:start + chunk_size]] * 255).to(device)
        # both directions in one network call (the original makes two): the same per-item computation (the
        # networks run in eval mode, no item depends on another), half the calls and twice the batch
        both = flow_model(torch.cat((img_i, img_j)), torch.cat((img_j, img_i)), iters=iters, test_mode=True)[1]
        fwd, bwd = both.float().split(len(img_i))
        flows_ij.append(fwd)
        flows_ji.append(bwd)
        logger.debug("optical flow: %d/%d pairs", min(start + chunk_size, len(edges)), len(edges))
    flow_ij = torch.cat(flows_ij)
    flow_ji = torch.cat(flows_ji)
    return flow_ij, flow_ji, flow_validity_mask(flow_ij, flow_ji), flow_validity_mask(flow_ji, flow_ij)


def flow_consistency_terms(flow_fwd: torch.Tensor, flow_bwd: torch.Tensor, consistency: str = "signed_sum"
                           ) -> Tuple[torch.Tensor, torch.Tensor]:
    """The two terms of the forward-backward check.

    Args:
        flow_fwd: ``[B, 2, H, W]`` flow from image 1 to image 2 (pixels, x then y).
        flow_bwd: ``[B, 2, H, W]`` flow from image 2 to image 1.
        consistency: ``"signed_sum"`` (the original: ``|res_x + res_y|``, opposite-sign errors cancel) or
            ``"l2"`` (Euclidean norm of the residual vector).

    Returns:
        ``inbounds [B, 1, H, W]`` bool (target ``p + F(p)`` inside ``[0, W-1] x [0, H-1]``, inclusive) and
        ``inconsistency [B, 1, H, W]`` float, where the residual is ``F(p) + B(p + F(p))`` with ``B`` sampled
        bilinearly (``grid_sample``, ``align_corners=True``, zeros outside).
    """
    b, _, h, w = flow_fwd.shape
    ys, xs = torch.meshgrid(torch.arange(h, device=flow_fwd.device, dtype=flow_fwd.dtype),
                            torch.arange(w, device=flow_fwd.device, dtype=flow_fwd.dtype), indexing="ij")
    tx = xs + flow_fwd[:, 0]  # [B, H, W]
    ty = ys + flow_fwd[:, 1]
    inbounds = ((tx >= 0) & (tx <= w - 1) & (ty >= 0) & (ty <= h - 1)).unsqueeze(1)
    grid = torch.stack([tx / ((w - 1) / 2) - 1, ty / ((h - 1) / 2) - 1], dim=-1)
    sampled = F.grid_sample(flow_bwd, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    residual = flow_fwd + sampled  # [B, 2, H, W]
    if consistency == "signed_sum":
        inconsistency = residual.sum(dim=1, keepdim=True).abs()
    elif consistency == "l2":
        inconsistency = residual.norm(dim=1, keepdim=True)
    else:
        raise ValueError(f"consistency must be 'signed_sum' or 'l2', got {consistency!r}")
    return inbounds, inconsistency


def flow_validity_mask(flow_fwd: torch.Tensor, flow_bwd: torch.Tensor, th: float = 3.0,
                       consistency: str = "signed_sum") -> torch.Tensor:
    """Forward-backward validity (the original ``OccMask(th)``): ``inbounds AND inconsistency < th``.

    Args:
        flow_fwd, flow_bwd: ``[B, 2, H, W]`` (see :func:`flow_consistency_terms`).
        th: threshold in pixels (3.0 in MonST3R).
        consistency: ``"signed_sum"`` (default, the original's ``|res_x + res_y|``) or ``"l2"``.

    Returns:
        ``[B, 1, H, W]`` bool. The pixel grid is rebuilt per call (the original cached the first call's size).
    """
    inbounds, inconsistency = flow_consistency_terms(flow_fwd, flow_bwd, consistency)
    return inbounds & (inconsistency < th)
