"""Optical-flow networks used by MonST3R's optimizer: SEA-RAFT ('M' config, default) and classic RAFT.

Both are our own implementations whose module names match the official checkpoints (strict loading).
MonST3R's call: ``flow = net(img_i * 255, img_j * 255, iters=20, test_mode=True)[1]`` -> ``[B, 2, H, W]`` pixels
(channel 0 = x, 1 = y), images ``[B, 3, H, W]`` RGB in 0..255.

Default checkpoint paths (relative to the repository root; ``bash data/download_ckpt.sh``):
``third_party/RAFT/models/Tartan-C-T-TSKH-spring540x960-M.pth`` (SEA-RAFT) and
``third_party/RAFT/models/raft-sintel.pth`` (classic RAFT).
"""
from .loader import (
    DEFAULT_RAFT_SINTEL_CKPT,
    DEFAULT_RAFT_THINGS_CKPT,
    DEFAULT_SEARAFT_CKPT,
    NAMED_CHECKPOINTS,
    build_flow_model,
    detect_architecture,
    load_flow_model,
    normalize_state_dict,
    read_state_dict,
    resolve_checkpoint,
)
from .padder import InputPadder
from .raft import RAFT
from .sea_raft import SEARAFT, SEARAFTConfig

__all__ = [
    "DEFAULT_RAFT_SINTEL_CKPT", "DEFAULT_RAFT_THINGS_CKPT", "DEFAULT_SEARAFT_CKPT", "NAMED_CHECKPOINTS",
    "InputPadder", "RAFT", "SEARAFT", "SEARAFTConfig", "build_flow_model", "detect_architecture",
    "load_flow_model", "normalize_state_dict", "read_state_dict", "resolve_checkpoint",
]
