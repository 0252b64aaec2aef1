"""Patch embeddings of DUSt3R/MonST3R (spec model.md 2).

``PatchEmbedDust3R``: any orientation, tokens row-major over ``(H/16, W/16)``.
``ManyAR_PatchEmbed``: training-data convention where portrait images are stored transposed in a landscape
batch; ``true_shape [B, 2]`` tells which items are portrait; those are transposed back before the conv.
Both return ``(x [B, N, E], pos [B, N, 2])``.
"""
from __future__ import annotations

import torch

from croco.models.blocks import PatchEmbed


class PatchEmbedDust3R(PatchEmbed):
    """Plain patch embedding; ``true_shape`` is ignored."""

    def forward(self, img: torch.Tensor, **ignored):
        return self._embed(img)


class ManyAR_PatchEmbed(PatchEmbed):
    """Patch embedding for landscape batches holding transposed portrait items (``true_shape`` H > W)."""

    def forward(self, img: torch.Tensor, true_shape: torch.Tensor):
        B, C, H, W = img.shape
        if W < H:
            raise ValueError("ManyAR_PatchEmbed expects a landscape batch tensor (W >= H)")
        if H % self.patch_size[0] or W % self.patch_size[1]:
            raise ValueError(f"image size {H}x{W} is not a multiple of the patch size {self.patch_size[0]}")
        true_shape = torch.as_tensor(true_shape).reshape(B, 2)
        is_landscape = (true_shape[:, 1] >= true_shape[:, 0]).to(img.device)
        is_portrait = ~is_landscape
        p = self.patch_size[0]
        n = (H // p) * (W // p)
        x = torch.zeros((B, n, self.proj.out_channels), dtype=torch.float32, device=img.device)
        pos = torch.zeros((B, n, 2), dtype=torch.int64, device=img.device)
        if is_landscape.any():
            xl, pl = self._embed(img[is_landscape])
            x[is_landscape], pos[is_landscape] = xl.float(), pl
        if is_portrait.any():
            xp, pp = self._embed(img[is_portrait].swapaxes(-1, -2))
            x[is_portrait], pos[is_portrait] = xp.float(), pp
        return x, pos


PATCH_EMBEDS = {"PatchEmbedDust3R": PatchEmbedDust3R, "ManyAR_PatchEmbed": ManyAR_PatchEmbed}


def get_patch_embed(patch_embed_cls: str, img_size, patch_size: int, enc_embed_dim: int):
    """Build one of the two patch embeddings by name (allow-list, no ``eval``)."""
    if patch_embed_cls not in PATCH_EMBEDS:
        raise ValueError(f"unknown patch_embed_cls {patch_embed_cls!r}; use one of {sorted(PATCH_EMBEDS)}")
    return PATCH_EMBEDS[patch_embed_cls](img_size, patch_size, 3, enc_embed_dim)
