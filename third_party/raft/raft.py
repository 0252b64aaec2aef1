"""Classic RAFT (Teed & Deng, ECCV 2020), the large model of ``raft-sintel.pth`` / ``raft-things.pth``.

Written from the paper and ``shared/spec/third_party.md`` §3, with the original checkpoints' module names so they
load with ``strict=True``. (torchvision's ``raft_large`` is numerically the same network under other key names;
``golden/flow/raft_classic_manifest.json`` maps them. We keep our own module so the checkpoint loads directly and
the test-mode output ``(low_res_flow, upsampled_flow)`` is available.)

Shapes: images ``[N, 3, H, W]`` float in 0..255; features at 1/8 resolution ``[N, C, h, w]``.
"""
from __future__ import annotations

from typing import List, Optional, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from monst3r.errors import Monst3rInputError

from .common import CorrPyramid, convex_upsample, coords_grid
from .padder import InputPadder


def _norm(kind: str, planes: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(planes)
    if kind == "instance":
        return nn.InstanceNorm2d(planes)  # affine=False, no running stats: no state-dict entries
    raise ValueError(f"unknown norm {kind!r}")


class ResidualBlock(nn.Module):
    """``ReLU(shortcut(x) + ReLU(norm2(conv2(ReLU(norm1(conv1(x)))))))``; projection shortcut when stride != 1.

    ``norm3`` is registered both directly and as ``downsample.1`` (the checkpoints carry both names).
    """

    def __init__(self, in_planes: int, planes: int, norm: str, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.norm1 = _norm(norm, planes)
        self.norm2 = _norm(norm, planes)
        self.downsample: Optional[nn.Sequential] = None
        if stride != 1:
            self.norm3 = _norm(norm, planes)
            self.downsample = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride=stride), self.norm3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.norm1(self.conv1(x)))
        y = self.relu(self.norm2(self.conv2(y)))
        if self.downsample is not None:
            x = self.downsample(x)
        return self.relu(x + y)


class BasicEncoder(nn.Module):
    """RAFT feature/context encoder: ``[N, 3, H, W] -> [N, out_dim, H/8, W/8]`` (widths 64, 96, 128)."""

    def __init__(self, out_dim: int = 256, norm: str = "batch") -> None:
        super().__init__()
        self.norm1 = _norm(norm, 64)  # registered before conv1, as in the checkpoints
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3)
        self.relu1 = nn.ReLU(inplace=True)
        self.layer1 = nn.Sequential(ResidualBlock(64, 64, norm, 1), ResidualBlock(64, 64, norm, 1))
        self.layer2 = nn.Sequential(ResidualBlock(64, 96, norm, 2), ResidualBlock(96, 96, norm, 1))
        self.layer3 = nn.Sequential(ResidualBlock(96, 128, norm, 2), ResidualBlock(128, 128, norm, 1))
        self.conv2 = nn.Conv2d(128, out_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.norm1(self.conv1(x)))
        return self.conv2(self.layer3(self.layer2(self.layer1(x))))


class MotionEncoder(nn.Module):
    """Correlation ``[N, 324, h, w]`` + flow ``[N, 2, h, w]`` -> ``[N, 128, h, w]`` (last 2 channels = flow)."""

    def __init__(self, corr_channel: int = 324) -> None:
        super().__init__()
        self.convc1 = nn.Conv2d(corr_channel, 256, 1)
        self.convc2 = nn.Conv2d(256, 192, 3, padding=1)
        self.convf1 = nn.Conv2d(2, 128, 7, padding=3)
        self.convf2 = nn.Conv2d(128, 64, 3, padding=1)
        self.conv = nn.Conv2d(256, 126, 3, padding=1)

    def forward(self, flow: torch.Tensor, corr: torch.Tensor) -> torch.Tensor:
        c = F.relu(self.convc2(F.relu(self.convc1(corr))))
        f = F.relu(self.convf2(F.relu(self.convf1(flow))))
        return torch.cat([F.relu(self.conv(torch.cat([c, f], dim=1))), flow], dim=1)


class SepConvGRU(nn.Module):
    """GRU with a (1x5) then a (5x1) convolutional pass; hidden ``[N, 128, h, w]``, input ``[N, 256, h, w]``."""

    def __init__(self, hidden: int = 128, inp: int = 256) -> None:
        super().__init__()
        for suffix, kernel, pad in (("1", (1, 5), (0, 2)), ("2", (5, 1), (2, 0))):
            for gate in ("z", "r", "q"):
                setattr(self, f"conv{gate}{suffix}", nn.Conv2d(hidden + inp, hidden, kernel, padding=pad))

    def _step(self, h: torch.Tensor, x: torch.Tensor, suffix: str) -> torch.Tensor:
        hx = torch.cat([h, x], dim=1)
        z = torch.sigmoid(getattr(self, f"convz{suffix}")(hx))
        r = torch.sigmoid(getattr(self, f"convr{suffix}")(hx))
        q = torch.tanh(getattr(self, f"convq{suffix}")(torch.cat([r * h, x], dim=1)))
        return (1 - z) * h + z * q

    def forward(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self._step(self._step(h, x, "1"), x, "2")


class FlowHead(nn.Module):
    """``[N, 128, h, w] -> [N, 2, h, w]`` delta flow."""

    def __init__(self, in_dim: int = 128, hidden: int = 256) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_dim, hidden, 3, padding=1)
        self.conv2 = nn.Conv2d(hidden, 2, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.relu(self.conv1(x)))


class UpdateBlock(nn.Module):
    """One RAFT update: returns (hidden ``[N,128,h,w]``, mask logits ``[N,576,h,w]``, delta flow ``[N,2,h,w]``)."""

    def __init__(self, hidden: int = 128) -> None:
        super().__init__()
        self.encoder = MotionEncoder()
        self.gru = SepConvGRU(hidden, 128 + hidden)
        self.flow_head = FlowHead(hidden, 256)
        self.mask = nn.Sequential(nn.Conv2d(hidden, 256, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(256, 64 * 9, 1))

    def forward(self, net: torch.Tensor, inp: torch.Tensor, corr: torch.Tensor,
                flow: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        net = self.gru(net, torch.cat([inp, self.encoder(flow, corr)], dim=1))
        return net, 0.25 * self.mask(net), self.flow_head(net)


MIN_SIZE = 128  # below this the original silently returns NaN


class RAFT(nn.Module):
    """Classic RAFT (large). ``forward(img1, img2, iters=12, flow_init=None, upsample=True, test_mode=False)``.

    Images ``[N, 3, H, W]`` in 0..255. Test mode returns ``(low_res_flow [N,2,Hp/8,Wp/8], flow_up [N,2,H,W])``;
    otherwise the list of all upsampled flows. Inputs whose size is not a multiple of 8 are replicate-padded
    (sintel mode) and the upsampled flows cropped back (the original has no padding and needs multiples of 8,
    for which this is a no-op); the low-resolution flow stays at the padded 1/8 size.
    """

    hidden_dim = 128
    context_dim = 128

    def __init__(self) -> None:
        super().__init__()
        self.fnet = BasicEncoder(256, "instance")
        self.cnet = BasicEncoder(self.hidden_dim + self.context_dim, "batch")
        self.update_block = UpdateBlock(self.hidden_dim)

    def forward(self, image1: torch.Tensor, image2: torch.Tensor, iters: int = 12,
                flow_init: Optional[torch.Tensor] = None, upsample: bool = True,
                test_mode: bool = False) -> Union[Tuple[torch.Tensor, torch.Tensor], List[torch.Tensor]]:
        image1 = 2 * (image1 / 255.0) - 1.0
        image2 = 2 * (image2 / 255.0) - 1.0
        padder = InputPadder(image1.shape)
        if min(padder.padded_shape) < MIN_SIZE:
            raise Monst3rInputError(
                f"RAFT needs images of at least {MIN_SIZE} px per side, got {tuple(image1.shape[-2:])}; use larger images")
        image1, image2 = padder.pad(image1.contiguous(), image2.contiguous())
        n = image1.shape[0]
        fmap1, fmap2 = torch.split(self.fnet(torch.cat([image1, image2], dim=0)), [n, n], dim=0)
        corr_fn = CorrPyramid(fmap1.float(), fmap2.float(), num_levels=4, radius=4)
        net, inp = torch.split(self.cnet(image1), [self.hidden_dim, self.context_dim], dim=1)
        net, inp = torch.tanh(net), torch.relu(inp)

        h8, w8 = fmap1.shape[-2:]
        coords0 = coords_grid(n, h8, w8, device=image1.device)
        coords1 = coords0.clone()
        if flow_init is not None:
            coords1 = coords1 + flow_init
        predictions: List[torch.Tensor] = []
        flow_up = None
        for _ in range(iters):
            coords1 = coords1.detach()
            corr = corr_fn(coords1)
            net, mask, delta = self.update_block(net, inp, corr, coords1 - coords0)
            coords1 = coords1 + delta
            flow_up = padder.unpad(convex_upsample(8 * (coords1 - coords0), mask))
            predictions.append(flow_up)
        if test_mode:
            return coords1 - coords0, flow_up
        return predictions
