"""The two-frame demo's motion mask (spec optimizer.md 7.2, cli.md 4.1 step 9).

With exactly two frames the demo has no optimisation (``PairViewer``); the original then also compares the optical
flow of classic RAFT (``raft-things``, 20 iterations, both directions) with the flow the reconstructed depths and
cameras imply for a static scene. The original writes the files next to the sequence folder, in ``--output_dir``
itself (optimizer.md 7.2). Deliberate difference: we write them INSIDE the result folder ``<output_dir>/<seq_name>``
(``monst3r.pipeline.two_frame_extras``), because the project rule is that nothing outside the result folder is ever
touched, and so that they are part of the one atomic write and replaced by a re-run:

    dynamic_mask.png         JET colour map of the min-max normalised forward error
    dynamic_mask_binary.png  normalised forward error > 0.35 (0/255)
    dynamic_mask.npy         raw forward error ``[H, W]`` float32 (pixels)
    dynamic_mask_bw.png/.npy the same colour map / raw error for the backward direction
    forward_flow.npy/.png    RAFT flow frame 0 -> 1 ``[H, W, 2]`` and its colour-wheel picture
    backward_flow.npy/.png   RAFT flow frame 1 -> 0

The ego flow is ``monst3r.cloud_opt.self_masks.ego_flow`` (the same projection as the original's numpy
``compute_optical_flow``: unproject with K_0, move by inv(c2w_1) c2w_0, project with K_1; its 1e-6 guards
differ by ~1e-6 relative). A constant error map normalises to zeros here (the original divides by zero).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict

import numpy as np
import torch

log = logging.getLogger(__name__)

FILES = ("dynamic_mask.png", "dynamic_mask_binary.png", "dynamic_mask.npy", "dynamic_mask_bw.png",
         "dynamic_mask_bw.npy", "forward_flow.npy", "forward_flow.png", "backward_flow.npy", "backward_flow.png")


def _normalise(err: torch.Tensor) -> torch.Tensor:
    lo, hi = err.min(), err.max()
    return (err - lo) / (hi - lo) if float(hi - lo) > 0 else torch.zeros_like(err)


@torch.no_grad()
def two_frame_motion_mask(result, flow_model, threshold: float = 0.35, iters: int = 20) -> Dict[str, np.ndarray]:
    """Forward/backward flow-vs-ego-motion error of a two-frame :class:`~monst3r.result.Reconstruction`.

    flow_model: RAFT / SEA-RAFT called as ``net(img1, img2, iters=, test_mode=True)[1]`` on ``[B, 3, H, W]``
    images in [0, 255] (the demo uses classic RAFT ``raft-things``). Returns float32 / bool numpy arrays:
    ``error``, ``normalized``, ``binary``, ``error_bw``, ``normalized_bw``, ``binary_bw`` (``[H, W]``) and
    ``flow``, ``flow_bw`` (``[H, W, 2]``).
    """
    from monst3r.cloud_opt.self_masks import ego_flow

    if result.n_frames != 2 or result.frame_shape(0) != result.frame_shape(1):
        raise ValueError("the two-frame motion mask needs exactly two frames of one size")
    K_np = np.asarray(result.intrinsics, np.float64)
    if not (np.isfinite(K_np).all() and np.isfinite(np.asarray(result.poses)).all()
            and (K_np[:, 0, 0] > 0).all() and (K_np[:, 1, 1] > 0).all()):
        raise ValueError("the pair gave degenerate cameras (zero or non-finite focal length)")
    dev = next((p.device for p in flow_model.parameters()), torch.device("cpu"))
    rgb = torch.as_tensor(np.asarray(result.rgb), dtype=torch.float32, device=dev)  # [2, H, W, 3]
    img = rgb.permute(0, 3, 1, 2) * 255
    both = flow_model(img, img.flip(0), iters=iters, test_mode=True)[1].float()  # 0->1 and 1->0, one call
    c2w = torch.as_tensor(result.poses, dtype=torch.float32, device=dev)
    K = torch.as_tensor(result.intrinsics, dtype=torch.float32, device=dev)
    depth = torch.as_tensor(np.asarray(result.depths), dtype=torch.float32, device=dev)[:, None]  # [2, 1, H, W]
    R, T = c2w[:, :3, :3], c2w[:, :3, 3]
    src, tgt = torch.tensor([0, 1], device=dev), torch.tensor([1, 0], device=dev)
    ego = ego_flow(R[src], T[src], R[tgt], T[tgt], 1 / (depth + 1e-6), K[tgt], torch.linalg.inv(K[src]))
    err = torch.linalg.vector_norm(ego - both, dim=1)  # [2, H, W]
    out: Dict[str, np.ndarray] = {}
    for k, suffix in ((0, ""), (1, "_bw")):
        norm = _normalise(err[k])
        out["error" + suffix] = err[k].cpu().numpy().astype(np.float32)
        out["normalized" + suffix] = norm.cpu().numpy().astype(np.float32)
        out["binary" + suffix] = (norm > threshold).cpu().numpy()
        out["flow" + suffix] = both[k].permute(1, 2, 0).cpu().numpy().astype(np.float32)
    return out


def write_two_frame_outputs(masks: Dict[str, np.ndarray], folder) -> list[Path]:
    """Write the files of the module docstring into ``folder``; returns their paths."""
    import cv2
    from torchvision.utils import flow_to_image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)

    def jet(norm: np.ndarray) -> np.ndarray:  # BGR, as cv2.imwrite expects
        return cv2.applyColorMap((np.clip(norm, 0, 1) * 255).astype(np.uint8), cv2.COLORMAP_JET)

    def wheel(flow: np.ndarray) -> np.ndarray:
        rgb = flow_to_image(torch.from_numpy(flow).permute(2, 0, 1)).permute(1, 2, 0).numpy()
        return np.ascontiguousarray(rgb[..., ::-1])
    written = []

    def save(name, value):
        path = folder / name
        if name.endswith(".npy"):
            np.save(path, value)
        elif not cv2.imwrite(str(path), value):
            raise OSError(f"cannot write {path}")
        written.append(path)
    save("dynamic_mask.png", jet(masks["normalized"]))
    save("dynamic_mask_binary.png", masks["binary"].astype(np.uint8) * 255)
    save("dynamic_mask.npy", masks["error"])
    save("forward_flow.npy", masks["flow"])
    save("forward_flow.png", wheel(masks["flow"]))
    save("dynamic_mask_bw.png", jet(masks["normalized_bw"]))
    save("dynamic_mask_bw.npy", masks["error_bw"])
    save("backward_flow.npy", masks["flow_bw"])
    save("backward_flow.png", wheel(masks["flow_bw"]))
    return written
