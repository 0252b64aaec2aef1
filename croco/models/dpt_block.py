"""DPT fusion decoder used by the DUSt3R/MonST3R heads (spec model.md 4.2).

Key layout (under ``downstream_headK.dpt.``): ``scratch.layer{1..4}_rn`` (aliased as ``scratch.layer_rn.{0..3}``),
``scratch.refinenet{1..4}.{out_conv, resConfUnit1, resConfUnit2}``, ``head.{0,2,4}``, ``act_postprocess.{0..3}``.
"""
from __future__ import annotations

from typing import List, Sequence, Tuple

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


class ResidualConvUnit(nn.Module):
    """``x + conv2(relu(conv1(relu(x))))`` (3x3 convs with bias, no batch norm)."""

    def __init__(self, features: int):
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, 3, padding=1, bias=True)
        self.conv2 = nn.Conv2d(features, features, 3, padding=1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # same arithmetic as the original (non-inplace ReLU on the input, skip on the un-activated x); the second
        # ReLU and the skip add work in place on fresh conv outputs (saves two allocations of the map)
        return self.conv2(F.relu(self.conv1(F.relu(x)), inplace=True)).add_(x)


class FeatureFusionBlock(nn.Module):
    """``R(a[, b])``: ``a + RCU1(b)`` (when b is given), ``RCU2``, bilinear x2 (align_corners), 1x1 out_conv."""

    def __init__(self, features: int):
        super().__init__()
        self.out_conv = nn.Conv2d(features, features, 1, bias=True)  # registration order = original key order
        self.resConfUnit1 = ResidualConvUnit(features)
        self.resConfUnit2 = ResidualConvUnit(features)

    def forward(self, a: torch.Tensor, b: torch.Tensor = None) -> torch.Tensor:
        if b is not None:
            a = self.resConfUnit1(b).add_(a)  # a + RCU1(b) (float addition commutes exactly)
        a = self.resConfUnit2(a)
        # Deliberate deviation from the original's order (upsample, then out_conv): the 1x1 out_conv runs BEFORE
        # the upsampling, on 4x fewer pixels. Both are linear and the bilinear weights of every output pixel sum
        # to 1, so out_conv(up(a)) == up(out_conv(a)) up to float rounding (~1e-7 relative; the golden outputs
        # stay within tolerance). CPU: saves ~10 ms per head at 160x80.
        return F.interpolate(self.out_conv(a), scale_factor=2, mode="bilinear", align_corners=True)


class Interpolate(nn.Module):
    """Bilinear x``scale_factor`` upsampling with ``align_corners=True`` (no parameters)."""

    def __init__(self, scale_factor: float = 2.0):
        super().__init__()
        self.scale_factor = scale_factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=self.scale_factor, mode="bilinear", align_corners=True)


class _Scratch(nn.Module):
    """Container giving the original key names; ``layer_rn`` re-registers the same four convs (aliases)."""

    def __init__(self, layer_dims: Sequence[int], feature_dim: int):
        super().__init__()
        convs = [nn.Conv2d(d, feature_dim, 3, padding=1, bias=False) for d in layer_dims]
        self.layer1_rn, self.layer2_rn, self.layer3_rn, self.layer4_rn = convs
        self.layer_rn = nn.ModuleList(convs)
        self.refinenet1 = FeatureFusionBlock(feature_dim)
        self.refinenet2 = FeatureFusionBlock(feature_dim)
        self.refinenet3 = FeatureFusionBlock(feature_dim)
        self.refinenet4 = FeatureFusionBlock(feature_dim)


class DPTOutputAdapter(nn.Module):
    """DPT decoder from 4 token maps to a dense ``[B, num_channels, H, W]`` output.

    Args:
        dim_tokens: channel count of each hooked token tensor, e.g. ``[1024, 768, 768, 768]``.
        hooks: indices into the decoder's token list, e.g. ``[0, 6, 9, 12]``.
        layer_dims, feature_dim, last_dim: DPT widths (defaults 96/192/384/768, 256, 128).
    """

    def __init__(self, dim_tokens: Sequence[int], hooks: Sequence[int], num_channels: int = 4,
                 patch_size: int = 16, layer_dims: Sequence[int] = (96, 192, 384, 768),
                 feature_dim: int = 256, last_dim: int = 128):
        super().__init__()
        assert len(hooks) == 4 and len(dim_tokens) == 4
        self.hooks = list(hooks)
        self.patch_size = patch_size
        self.scratch = _Scratch(layer_dims, feature_dim)
        self.head = nn.Sequential(
            nn.Conv2d(feature_dim, feature_dim // 2, 3, padding=1),
            Interpolate(2),
            nn.Conv2d(feature_dim // 2, last_dim, 3, padding=1),
            nn.ReLU(True),
            nn.Conv2d(last_dim, num_channels, 1),
        )
        d = layer_dims
        self.act_postprocess = nn.ModuleList([
            nn.Sequential(nn.Conv2d(dim_tokens[0], d[0], 1), nn.ConvTranspose2d(d[0], d[0], 4, stride=4)),
            nn.Sequential(nn.Conv2d(dim_tokens[1], d[1], 1), nn.ConvTranspose2d(d[1], d[1], 2, stride=2)),
            nn.Sequential(nn.Conv2d(dim_tokens[2], d[2], 1)),
            nn.Sequential(nn.Conv2d(dim_tokens[3], d[3], 1), nn.Conv2d(d[3], d[3], 3, stride=2, padding=1)),
        ])

    def forward(self, tokens: List[torch.Tensor], image_size: Tuple[int, int]) -> torch.Tensor:
        """``tokens``: list of ``[B, N, C_l]`` (N = (H/p)*(W/p), row-major); returns ``[B, C_out, H, W]``."""
        H, W = image_size
        nh, nw = H // self.patch_size, W // self.patch_size
        # No .contiguous(): the rearranged view of [B, N, C] tokens has channels-last strides, as in the original,
        # and every conv / upsampling below then stays channels-last. On CPU that is the fast layout: oneDNN runs
        # NHWC convs without reordering the activations, upsample_bilinear2d has a vectorised channels-last
        # kernel (contiguous NCHW inputs take a slow path that copies to channels-last and back), and the
        # post-processing's norm over xyz reads contiguous memory. Measured (1 thread, CPU time per forward,
        # small golden model 160x80 B4): 0.61 s channels-last vs 0.74 s with .contiguous() here.
        layers = [rearrange(tokens[h], "b (nh nw) c -> b c nh nw", nh=nh, nw=nw) for h in self.hooks]
        layers = [post(x) for post, x in zip(self.act_postprocess, layers)]
        layers = [conv(x) for conv, x in zip(self.scratch.layer_rn, layers)]
        s = self.scratch
        p4 = s.refinenet4(layers[3])[:, :, : layers[2].shape[2], : layers[2].shape[3]]
        p3 = s.refinenet3(p4, layers[2])
        p2 = s.refinenet2(p3, layers[1])
        p1 = s.refinenet1(p2, layers[0])
        return self.head(p1)
