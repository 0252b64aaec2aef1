"""Linear head (spec model.md 4.3): last decoder tokens -> pixel-shuffled dense output."""
from __future__ import annotations

from typing import List, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from monst3r.heads.activation import postprocess


class LinearPts3d(nn.Module):
    """``proj = Linear(dec_dim, (3+has_conf)*p*p)`` on ``tokens[-1] [B, N, dec_dim]`` -> ``[B, 3+c, H, W]``."""

    def __init__(self, net, has_conf: bool = False):
        super().__init__()
        self.patch_size = net.patch_embed.patch_size[0]
        self.depth_mode = net.depth_mode
        self.conf_mode = net.conf_mode
        self.has_conf = has_conf
        self.proj = nn.Linear(net.dec_embed_dim, (3 + has_conf) * self.patch_size ** 2)

    def forward(self, tokens: List[torch.Tensor], img_info: Tuple[int, int]):
        H, W = int(img_info[0]), int(img_info[1])
        x = tokens[-1]
        B, N, _ = x.shape
        feat = self.proj(x).transpose(-1, -2).reshape(B, -1, H // self.patch_size, W // self.patch_size)
        feat = F.pixel_shuffle(feat, self.patch_size)
        return postprocess(feat, self.depth_mode, self.conf_mode)
