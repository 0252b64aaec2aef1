"""DPT fusion decoder used by the DUSt3R/MonST3R heads (spec model.md 4.2).

Key layout (under ``downstream_headK.dpt.``): ``scratch.layer{1..4}_rn`` (aliased as ``scratch.layer_rn.{0..3}``),
``scratch.refinenet{1..4}.{out_conv, resConfUnit1, resConfUnit2}``, ``head.{0,2,4}``, ``act_postprocess.{0..3}``.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

try:  # oneDNN convolution with fused post-ops and pre-packed weights (what torch.compile's CPU freezing uses)
    _CONV_POINTWISE = torch.ops.mkldnn._convolution_pointwise
    _REORDER_WEIGHT = torch.ops.mkldnn._reorder_convolution_weight
except (AttributeError, RuntimeError):  # pragma: no cover - PyTorch built without oneDNN
    _CONV_POINTWISE = _REORDER_WEIGHT = None

#: this PyTorch has the fused oneDNN convolution (the fast CPU inference path of :func:`conv2d` can run)
HAS_FUSED_CONV = _CONV_POINTWISE is not None


class _PackedWeights(dict):
    """Per-conv cache of oneDNN-packed weights. Opaque oneDNN tensors cannot be deep-copied or pickled, so a copy
    of the module (``copy.deepcopy``, ``torch.save(model)``) starts with an empty cache instead."""

    def __deepcopy__(self, memo):
        return _PackedWeights()

    def __reduce__(self):
        return (_PackedWeights, ())


def _use_onednn(x: torch.Tensor) -> bool:
    """The fused oneDNN path: CPU float32 inference (no autograd), PyTorch's oneDNN backend enabled."""
    return (_CONV_POINTWISE is not None and not torch.is_grad_enabled() and x.device.type == "cpu"
            and x.dtype == torch.float32 and torch.backends.mkldnn.enabled and torch.backends.mkldnn.is_available())


def conv2d(conv: nn.Conv2d, x: torch.Tensor, relu: bool = False, add: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``conv(x)`` [``+ add``] [then ReLU]: ``[B, C_in, H, W] -> [B, C_out, H', W']``.

    CPU float32 inference runs it as ONE oneDNN call with the bias add / ReLU as fused post-ops and the weights
    packed once per (weight version, input shape) instead of being reordered on every call (the plain conv path
    reorders them each time: ~2x the time for the 768-channel 3x3 convs on the 5x10 token grid, 1 thread). Same
    oneDNN kernels as the plain path (equal to ``conv(x)`` + add + ReLU up to float rounding; 1x1 convs on one
    thread otherwise take PyTorch's im2col path). Anything else (autograd, GPU, other dtypes): the module
    itself, then the add and ReLU in place on its fresh output. Memory: the packed copy of a conv's weights is
    kept next to them (at most two input-map shapes), i.e. up to 2x the DPT head weights extra on CPU.
    """
    if not (_use_onednn(x) and isinstance(conv.padding, tuple) and conv.padding_mode == "zeros"):
        y = conv(x)
        if add is not None:
            y = y.add_(add)
        return F.relu(y, inplace=True) if relu else y
    w = conv.weight
    ident = (id(w), w.data_ptr(), w._version)  # any change of the weights (load_state_dict, .to, training)
    cache = conv.__dict__.get("_packed_weights")
    if cache is None or cache.get("ident") != ident:
        cache = conv._packed_weights = _PackedWeights(ident=ident)
    key = tuple(x.shape[1:])  # the packed layout does not depend on the batch size
    packed = cache.get(key)
    if packed is None:
        if len(cache) > 2:  # at most two map shapes (e.g. landscape and portrait): bounded extra memory
            cache = conv._packed_weights = _PackedWeights(ident=ident)
        packed = cache[key] = _REORDER_WEIGHT(w.detach(), list(conv.padding), list(conv.stride),
                                              list(conv.dilation), conv.groups, list(x.shape))
    args = (packed, conv.bias, list(conv.padding), list(conv.stride), list(conv.dilation), conv.groups)
    if add is None:
        return _CONV_POINTWISE(x, *args, "relu" if relu else "none", [], "")
    return _CONV_POINTWISE.binary(x, add, *args, "add", None, "relu" if relu else None, [], None)


def _sequential(layers: Sequence[nn.Module], x: torch.Tensor) -> torch.Tensor:
    """Run ``layers`` in order with the Conv2d layers through :func:`conv2d`, a ReLU right after a conv fused into
    it (other layers as they are)."""
    layers = list(layers)
    i = 0
    while i < len(layers):
        layer = layers[i]
        if type(layer) is nn.Conv2d:
            relu = i + 1 < len(layers) and type(layers[i + 1]) is nn.ReLU
            x = conv2d(layer, x, relu=relu)
            i += 2 if relu else 1
        else:
            x = layer(x)
            i += 1
    return x


class ResidualConvUnit(nn.Module):
    """``x + conv2(relu(conv1(relu(x))))`` (3x3 convs with bias, no batch norm)."""

    def __init__(self, features: int):
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, 3, padding=1, bias=True)
        self.conv2 = nn.Conv2d(features, features, 3, padding=1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # same arithmetic as the original (non-inplace ReLU on the input, skip on the un-activated x); the second
        # ReLU and the skip add are fused into the convs (or in place on their fresh outputs)
        return conv2d(self.conv2, conv2d(self.conv1, F.relu(x), relu=True), add=x)


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
        return F.interpolate(conv2d(self.out_conv, a), scale_factor=2, mode="bilinear", align_corners=True)


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
        layers = [_sequential(post, x) for post, x in zip(self.act_postprocess, layers)]
        layers = [conv2d(conv, x) for conv, x in zip(self.scratch.layer_rn, layers)]
        s = self.scratch
        p4 = s.refinenet4(layers[3])[:, :, : layers[2].shape[2], : layers[2].shape[3]]
        p3 = s.refinenet3(p4, layers[2])
        p2 = s.refinenet2(p3, layers[1])
        p1 = s.refinenet1(p2, layers[0])
        return self._head(p1)

    def _head(self, x: torch.Tensor) -> torch.Tensor:
        """``head``: conv, x2 up, conv, ReLU (in place / fused), 1x1 conv: ``[B, 256, H/2, W/2] -> [B, C_out, H, W]``.

        On CPU everything after the first conv runs one batch item at a time (the same per-item arithmetic): the
        x2-upsampled map and the full-resolution conv output are the largest tensors of the network (26 MB each
        for a batch of 4 at 160x80), and one item's worth stays in cache and is recycled by the allocator instead
        of being freshly mapped (page faults) for every forward: ~7% less CPU time per forward (1 thread).
        """
        layers = list(self.head)
        x = conv2d(layers[0], x)
        if x.device.type != "cpu" or x.shape[0] == 1:
            return _sequential(layers[1:], x)
        return torch.cat([_sequential(layers[1:], item) for item in x.split(1)])
