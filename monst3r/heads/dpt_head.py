"""DPT head (spec model.md 4.2): decoder token list -> dense points + confidence."""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch
from torch import nn

from croco.models.dpt_block import DPTOutputAdapter
from monst3r.heads.activation import postprocess


class PixelwiseTaskWithDPT(nn.Module):
    """``forward(tokens: list of L+1 tensors [B, N, C], img_info=(H, W)) -> {'pts3d', 'conf'}``.

    The DPT adapter lives under the ``dpt`` attribute (key prefix ``dpt.``).
    """

    def __init__(self, *, hooks: Sequence[int], dim_tokens: Sequence[int], num_channels: int = 4,
                 depth_mode=None, conf_mode=None, patch_size: int = 16, **dpt_kwargs):
        super().__init__()
        self.depth_mode = depth_mode
        self.conf_mode = conf_mode
        self.dpt = DPTOutputAdapter(dim_tokens=dim_tokens, hooks=hooks, num_channels=num_channels,
                                    patch_size=patch_size, **dpt_kwargs)

    def forward(self, tokens: List[torch.Tensor], img_info: Tuple[int, int]):
        out = self.dpt(tokens, image_size=(int(img_info[0]), int(img_info[1])))
        return postprocess(out, self.depth_mode, self.conf_mode)


def create_dpt_head(net, has_conf: bool = True, **dpt_kwargs) -> PixelwiseTaskWithDPT:
    """DPT head for ``net`` (needs ``dec_depth >= 10``): hooks ``[0, L*2//4, L*3//4, L]``."""
    L = net.dec_depth
    if L <= 9:
        raise ValueError(f"the DPT head needs dec_depth >= 10, got {L}")
    return PixelwiseTaskWithDPT(
        hooks=[0, L * 2 // 4, L * 3 // 4, L],
        dim_tokens=[net.enc_embed_dim, net.dec_embed_dim, net.dec_embed_dim, net.dec_embed_dim],
        num_channels=3 + int(has_conf), depth_mode=net.depth_mode, conf_mode=net.conf_mode,
        patch_size=net.patch_embed.patch_size[0], **dpt_kwargs)
