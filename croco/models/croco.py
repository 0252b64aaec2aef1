"""CroCo backbone: patch embedding, RoPE encoder, cross-attending decoder (spec model.md 1, 3.1).

``CroCoNet`` holds the parts shared by every CroCo-derived model; ``monst3r.model.AsymmetricCroCo3DStereo``
adds the second decoder and the heads. State-dict keys: ``mask_token``, ``patch_embed.*``, ``enc_blocks.*``,
``enc_norm.*``, ``decoder_embed.*``, ``dec_blocks.*``, ``dec_norm.*``.
"""
from __future__ import annotations

from typing import Tuple

import torch
from torch import nn

from croco.models.blocks import Block, DecoderBlock, PatchEmbed, layer_norm
from croco.models.masking import RandomMask
from croco.models.pos_embed import make_rope

# TF32 matmuls on Ampere+ GPUs, as the original sets at import (no effect on CPU).
torch.backends.cuda.matmul.allow_tf32 = True


class CroCoNet(nn.Module):
    """Encoder + one decoder.

    Args mirror the original CroCoNet (``mask_ratio`` and ``norm_layer`` are accepted for compatibility; the
    norm is always LayerNorm(eps=1e-6)). ``pos_embed`` must be ``'RoPE<freq>'``: the original's default
    ``'cosine'`` cannot run the DUSt3R encoder, so it is rejected here with a clear message.
    """

    def __init__(self, img_size=224, patch_size: int = 16, mask_ratio: float = 0.9, enc_embed_dim: int = 768,
                 enc_depth: int = 12, enc_num_heads: int = 12, dec_embed_dim: int = 512, dec_depth: int = 8,
                 dec_num_heads: int = 16, mlp_ratio: float = 4, norm_layer=None, norm_im2_in_dec: bool = True,
                 pos_embed: str = "cosine"):
        super().__init__()
        if not str(pos_embed).startswith("RoPE"):
            raise ValueError(f"pos_embed={pos_embed!r} is not supported: use 'RoPE100' (as every DUSt3R/MonST3R "
                             "checkpoint does)")
        self.enc_embed_dim, self.enc_depth = enc_embed_dim, enc_depth
        self.dec_embed_dim, self.dec_depth = dec_embed_dim, dec_depth
        self.mask_ratio = mask_ratio
        self.pos_embed = pos_embed
        self.patch_embed = self._build_patch_embed(img_size, patch_size, enc_embed_dim)
        self.mask_generator = RandomMask(self.patch_embed.num_patches, mask_ratio)
        self.rope = make_rope(pos_embed)
        self.enc_blocks = nn.ModuleList(
            [Block(enc_embed_dim, enc_num_heads, mlp_ratio, qkv_bias=True, rope=self.rope) for _ in range(enc_depth)])
        self.enc_norm = layer_norm(enc_embed_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dec_embed_dim))
        self.decoder_embed = nn.Linear(enc_embed_dim, dec_embed_dim, bias=True)
        self.dec_blocks = nn.ModuleList(
            [DecoderBlock(dec_embed_dim, dec_num_heads, mlp_ratio, qkv_bias=True, norm_mem=norm_im2_in_dec,
                          rope=self.rope) for _ in range(dec_depth)])
        self.dec_norm = layer_norm(dec_embed_dim)
        self.initialize_weights()

    def _build_patch_embed(self, img_size, patch_size, enc_embed_dim) -> PatchEmbed:
        return PatchEmbed(img_size, patch_size, 3, enc_embed_dim)

    # ------------------------------------------------------------------ init (spec model.md 1.7)
    def initialize_weights(self):
        self.patch_embed._init_weights()
        nn.init.normal_(self.mask_token, std=0.02)
        self.apply(self._init_module)

    @staticmethod
    def _init_module(m: nn.Module):
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    # ------------------------------------------------------------------ encoder / decoder
    def _encode_image(self, image: torch.Tensor, true_shape: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """``image [B,3,H,W]``, ``true_shape [B,2]`` -> ``(tokens [B,N,E_enc], pos [B,N,2])``."""
        x, pos = self.patch_embed(image, true_shape=true_shape)
        for blk in self.enc_blocks:
            x = blk(x, pos)
        return self.enc_norm(x), pos

