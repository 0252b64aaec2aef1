"""Transformer building blocks of the CroCo backbone (spec model.md 1.1-1.5).

State-dict key names follow the original exactly (``norm1``, ``attn.qkv``, ``attn.proj``, ``cross_attn.projq``,
``norm_y``, ``mlp.fc1`` ...). Attention goes through ``torch.nn.functional.scaled_dot_product_attention``.
Shapes: tokens ``x [B, N, C]``, positions ``pos [B, N, 2]``.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn


def layer_norm(dim: int) -> nn.LayerNorm:
    """LayerNorm used everywhere in CroCo/DUSt3R: eps 1e-6, affine."""
    return nn.LayerNorm(dim, eps=1e-6)


class DropPath(nn.Module):
    """Per-sample stochastic depth (scaled by 1/keep). Every rate in MonST3R is 0 (identity)."""

    def __init__(self, drop_prob: float = 0.0):
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep


class Mlp(nn.Module):
    """``fc1 (C -> hidden) -> exact GELU -> fc2 (hidden -> C)``."""

    def __init__(self, in_features: int, hidden_features: Optional[int] = None, out_features: Optional[int] = None):
        super().__init__()
        hidden_features = hidden_features or in_features
        out_features = out_features or in_features
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_features, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


def _heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """[B, N, C] -> [B, heads, N, C/heads]"""
    B, N, C = x.shape
    return x.view(B, N, num_heads, C // num_heads).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention with optional RoPE on q and k. ``(x [B,N,C], xpos [B,N,2]) -> [B,N,C]``."""

    def __init__(self, dim: int, rope: Optional[nn.Module] = None, num_heads: int = 8, qkv_bias: bool = True):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.rope = rope

    def forward(self, x: torch.Tensor, xpos: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # [B, heads, N, Dh] each
        if self.rope is not None:
            q = self.rope(q, xpos)
            k = self.rope(k, xpos)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(B, N, C))


class CrossAttention(nn.Module):
    """Cross-attention: queries from x, keys/values from the memory y.

    ``(query [B,Nq,C], key [B,Nk,C], value [B,Nk,C], qpos [B,Nq,2], kpos [B,Nk,2]) -> [B,Nq,C]``.
    """

    def __init__(self, dim: int, rope: Optional[nn.Module] = None, num_heads: int = 8, qkv_bias: bool = True):
        super().__init__()
        self.num_heads = num_heads
        self.projq = nn.Linear(dim, dim, bias=qkv_bias)
        self.projk = nn.Linear(dim, dim, bias=qkv_bias)
        self.projv = nn.Linear(dim, dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.rope = rope

    def forward(self, query, key, value, qpos, kpos) -> torch.Tensor:
        B, Nq, C = query.shape
        q = _heads(self.projq(query), self.num_heads)
        k = _heads(self.projk(key), self.num_heads)
        v = _heads(self.projv(value), self.num_heads)
        if self.rope is not None:
            q = self.rope(q, qpos)
            k = self.rope(k, kpos)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(B, Nq, C))


class Block(nn.Module):
    """Encoder block: ``x + Attn(LN1 x)``, then ``x + MLP(LN2 x)``."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 drop_path: float = 0.0, rope: Optional[nn.Module] = None):
        super().__init__()
        self.norm1 = layer_norm(dim)
        self.attn = Attention(dim, rope=rope, num_heads=num_heads, qkv_bias=qkv_bias)
        self.drop_path = DropPath(drop_path)
        self.norm2 = layer_norm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, xpos: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), xpos))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class DecoderBlock(nn.Module):
    """Decoder block: self-attention, cross-attention to the (normalised) memory, MLP.

    ``(x [B,N,C], y [B,M,C], xpos, ypos) -> (x', y)``; y is returned unchanged (un-normalised).
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 drop_path: float = 0.0, norm_mem: bool = True, rope: Optional[nn.Module] = None):
        super().__init__()
        self.norm1 = layer_norm(dim)
        self.attn = Attention(dim, rope=rope, num_heads=num_heads, qkv_bias=qkv_bias)
        self.cross_attn = CrossAttention(dim, rope=rope, num_heads=num_heads, qkv_bias=qkv_bias)
        self.drop_path = DropPath(drop_path)
        self.norm2 = layer_norm(dim)
        self.norm3 = layer_norm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.norm_y = layer_norm(dim) if norm_mem else nn.Identity()

    def forward(self, x, y, xpos, ypos):
        x = x + self.drop_path(self.attn(self.norm1(x), xpos))
        y_ = self.norm_y(y)
        x = x + self.drop_path(self.cross_attn(self.norm2(x), y_, y_, xpos, ypos))
        x = x + self.drop_path(self.mlp(self.norm3(x)))
        return x, y


class PatchEmbed(nn.Module):
    """Image to patch tokens: ``Conv2d(3, E, p, stride p)``. ``img [B,3,H,W] -> (x [B,N,E], pos [B,N,2])``.

    ``init`` ('xavier' default, 'kaiming', 'zero') only changes the initialisation of the conv (the option of the
    croco fork MonST3R depends on; spec model.md 3.3).
    """

    def __init__(self, img_size=224, patch_size: int = 16, in_chans: int = 3, embed_dim: int = 768,
                 norm_layer=None, flatten: bool = True, init: str = "xavier"):
        super().__init__()
        img_size = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
        self.img_size = img_size
        self.patch_size = (patch_size, patch_size)
        self.grid_size = (img_size[0] // patch_size, img_size[1] // patch_size)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.flatten = flatten
        self.init = init
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = norm_layer(embed_dim) if norm_layer else nn.Identity()
        from croco.models.pos_embed import PositionGetter

        self.position_getter = PositionGetter()

    def _init_weights(self):
        w = self.proj.weight.data
        if self.init == "xavier":
            nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        elif self.init == "kaiming":
            nn.init.kaiming_uniform_(w.view(w.shape[0], -1))
        elif self.init == "zero":
            nn.init.zeros_(w)
        else:
            raise ValueError(f"unknown patch-embed init {self.init!r}")

    def _embed(self, img: torch.Tensor):
        B, _, H, W = img.shape
        p = self.patch_size[0]
        if H % p or W % p:
            raise ValueError(f"image size {H}x{W} is not a multiple of the patch size {p}")
        x = self.proj(img)  # [B,E,h,w]
        pos = self.position_getter(B, x.size(2), x.size(3), x.device)
        x = x.flatten(2).transpose(1, 2)
        return self.norm(x), pos

    def forward(self, img: torch.Tensor, **ignored):
        return self._embed(img)
