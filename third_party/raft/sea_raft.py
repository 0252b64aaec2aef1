"""SEA-RAFT (Wang, Lipson & Deng, ECCV 2024, arXiv 2405.14793) as MonST3R runs it.

Written from the paper and ``shared/spec/third_party.md`` §2. Module and parameter names follow the official
checkpoints (``Tartan-C-T-TSKH-spring540x960-M.pth``) so they load with ``strict=True``.
No ImageNet weights are ever downloaded: every value comes from the checkpoint.

Shapes: images ``[N, 3, H, W]`` float in 0..255; features at 1/8 of the (padded) resolution ``[N, C, h, w]``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from monst3r.errors import Monst3rInputError

from .common import CorrPyramid, convex_upsample, coords_grid
from .padder import InputPadder

_BLOCKS_PER_PRETRAIN = {"resnet18": (2, 2, 2), "resnet34": (3, 4, 6)}


@dataclass
class SEARAFTConfig:
    """Network sizes; the defaults are MonST3R's 'M' config (``congif_spring_M.json``)."""

    dim: int = 128
    radius: int = 4
    initial_dim: int = 64
    block_dims: Tuple[int, int, int] = (64, 128, 256)
    blocks_per_stage: Tuple[int, int, int] = (3, 4, 6)  # resnet34; resnet18 -> (2, 2, 2)
    num_blocks: int = 2
    iters: int = 4
    use_var: bool = True
    var_min: float = 0.0
    var_max: float = 10.0
    corr_levels: int = 4

    @property
    def corr_channel(self) -> int:
        return self.corr_levels * (2 * self.radius + 1) ** 2

    @classmethod
    def from_original_json(cls, cfg: Mapping) -> "SEARAFTConfig":
        """Build from the original JSON config keys (``pretrain``, ``dim``, ``radius``, ...)."""
        pretrain = cfg.get("pretrain", "resnet34")
        if pretrain not in _BLOCKS_PER_PRETRAIN:
            raise ValueError(f"unsupported SEA-RAFT backbone {pretrain!r}; expected one of {sorted(_BLOCKS_PER_PRETRAIN)}")
        return cls(
            dim=int(cfg["dim"]), radius=int(cfg["radius"]), initial_dim=int(cfg["initial_dim"]),
            block_dims=tuple(int(d) for d in cfg["block_dims"]), blocks_per_stage=_BLOCKS_PER_PRETRAIN[pretrain],
            num_blocks=int(cfg["num_blocks"]), iters=int(cfg.get("iters", 4)), use_var=bool(cfg.get("use_var", True)),
            var_min=float(cfg.get("var_min", 0)), var_max=float(cfg.get("var_max", 10)),
        )

    @classmethod
    def from_state_dict(cls, sd: Mapping[str, torch.Tensor]) -> "SEARAFTConfig":
        """Infer every size from a SEA-RAFT state dict (``iters``/``use_var``/``var_*`` keep their defaults)."""
        initial_dim = sd["cnet.conv1.weight"].shape[0]
        block_dims = tuple(sd[f"cnet.layer{i}.0.conv1.weight"].shape[0] for i in (1, 2, 3))
        blocks = tuple(
            len({k.split(".")[2] for k in sd if k.startswith(f"cnet.layer{i}.")}) for i in (1, 2, 3)
        )
        dim = sd["cnet.final_conv.weight"].shape[0] // 2
        corr_channel = sd["update_block.encoder.convc1.weight"].shape[1]
        radius = int(round((math.sqrt(corr_channel / 4) - 1) / 2))
        num_blocks = len({k.split(".")[2] for k in sd if k.startswith("update_block.refine.")})
        return cls(dim=dim, radius=radius, initial_dim=initial_dim, block_dims=block_dims,
                   blocks_per_stage=blocks, num_blocks=num_blocks)


class ResBlock(nn.Module):
    """SEA-RAFT residual block: ``ReLU(shortcut(x) + ReLU(bn2(conv2(ReLU(bn1(conv1(x)))))))``.

    Not torchvision's ``BasicBlock``: convs have biases and there is a ReLU after ``bn2`` before the addition.
    The projection shortcut ``downsample = Sequential(conv1x1, bn3)`` exists when the stride or width changes;
    ``bn3`` is registered twice on purpose (the checkpoints carry both ``bn3.*`` and ``downsample.1.*``).
    """

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.bn1 = nn.BatchNorm2d(planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample: Optional[nn.Sequential] = None
        if stride != 1 or in_planes != planes:
            self.bn3 = nn.BatchNorm2d(planes)
            self.downsample = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride=stride), self.bn3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        if self.downsample is not None:
            x = self.downsample(x)
        return self.relu(x + y)


class ResNetEncoder(nn.Module):
    """Truncated ResNet (stem without max-pool + 3 stages) with a 1x1 output conv; stride 8.

    The original calls it ``ResNetFPN`` although it has no FPN. ``[N, in_dim, H, W] -> [N, out_dim, H/8, W/8]``.
    """

    def __init__(self, in_dim: int, out_dim: int, cfg: SEARAFTConfig) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_dim, cfg.initial_dim, 7, stride=2, padding=3)
        self.bn1 = nn.BatchNorm2d(cfg.initial_dim)
        self.relu = nn.ReLU(inplace=True)
        dims = (cfg.initial_dim,) + tuple(cfg.block_dims)
        for stage in range(3):
            stride = 1 if stage == 0 else 2
            blocks = [ResBlock(dims[stage], dims[stage + 1], stride)]
            blocks += [ResBlock(dims[stage + 1], dims[stage + 1], 1) for _ in range(cfg.blocks_per_stage[stage] - 1)]
            setattr(self, f"layer{stage + 1}", nn.Sequential(*blocks))
        self.final_conv = nn.Conv2d(dims[-1], out_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.final_conv(x)


class MotionEncoder(nn.Module):
    """Encodes correlation features ``[N, corr_ch, h, w]`` and flow ``[N, 2, h, w]`` into ``[N, dim, h, w]``.

    The last two output channels are the input flow itself.
    """

    def __init__(self, corr_channel: int, dim: int) -> None:
        super().__init__()
        self.convc1 = nn.Conv2d(corr_channel, dim * 2, 1)
        self.convc2 = nn.Conv2d(dim * 2, dim + dim // 2, 3, padding=1)
        self.convf1 = nn.Conv2d(2, dim, 7, padding=3)
        self.convf2 = nn.Conv2d(dim, dim // 2, 3, padding=1)
        self.conv = nn.Conv2d(dim * 2, dim - 2, 3, padding=1)

    def forward(self, flow: torch.Tensor, corr: torch.Tensor) -> torch.Tensor:
        c = F.relu(self.convc2(F.relu(self.convc1(corr))))
        f = F.relu(self.convf2(F.relu(self.convf1(flow))))
        out = F.relu(self.conv(torch.cat([c, f], dim=1)))
        return torch.cat([out, flow], dim=1)


class ConvNextBlock(nn.Module):
    """ConvNeXt block with a 1x1 output projection: ``[N, dim, h, w] -> [N, out_dim, h, w]``.

    ``y = gamma * pwconv2(GELU(pwconv1(LN(dwconv7x7(x)))))`` (channels-last inside), output ``final(x + y)``.
    """

    def __init__(self, dim: int, out_dim: int, layer_scale_init: float = 1e-6) -> None:
        super().__init__()
        self.gamma = nn.Parameter(layer_scale_init * torch.ones(dim))
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * out_dim)
        self.pwconv2 = nn.Linear(4 * out_dim, dim)
        self.final = nn.Conv2d(dim, out_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dwconv(x).permute(0, 2, 3, 1)
        y = self.pwconv2(F.gelu(self.pwconv1(self.norm(y))))
        y = (self.gamma * y).permute(0, 3, 1, 2)
        return self.final(x + y)


class UpdateBlock(nn.Module):
    """Recurrent refinement: hidden ``[N, dim, h, w]`` <- ConvNeXt blocks on ``[hidden, context, motion]``."""

    def __init__(self, cfg: SEARAFTConfig) -> None:
        super().__init__()
        self.encoder = MotionEncoder(cfg.corr_channel, cfg.dim)
        self.refine = nn.ModuleList([ConvNextBlock(3 * cfg.dim, cfg.dim) for _ in range(cfg.num_blocks)])

    def forward(self, net: torch.Tensor, context: torch.Tensor, corr: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
        inp = torch.cat([context, self.encoder(flow, corr)], dim=1)
        for block in self.refine:
            net = block(torch.cat([net, inp], dim=1))
        return net


def laplace_mixture_nll(flow: torch.Tensor, info: torch.Tensor, flow_gt: torch.Tensor, var_min: float, var_max: float,
                        use_var: bool = True) -> torch.Tensor:
    """Per-pixel NLL of ``flow_gt`` under SEA-RAFT's 2-component Laplace mixture.

    Args:
        flow, flow_gt: ``[N, 2, H, W]``; info: ``[N, 4, H, W]`` (mixture logits, raw log-scales).
    Returns:
        ``[N, 2, H, W]`` (one value per flow component).
    """
    weight = info[:, :2]
    if use_var:
        log_b = torch.stack([info[:, 2].clamp(0, var_max), info[:, 3].clamp(var_min, 0)], dim=1)
    else:
        log_b = torch.zeros_like(info[:, 2:])
    err = (flow_gt - flow).abs()  # [N, 2(c), H, W]
    term2 = err.unsqueeze(2) * torch.exp(-log_b).unsqueeze(1)  # [N, 2(c), 2(m), H, W]
    term1 = (weight - math.log(2) - log_b).unsqueeze(1)  # [N, 1, 2(m), H, W]
    return torch.logsumexp(weight, dim=1, keepdim=True) - torch.logsumexp(term1 - term2, dim=2)


MIN_PADDED_SIZE = 128  # 1/8 size >= 16: the original's pyramid construction fails below this


class SEARAFT(nn.Module):
    """SEA-RAFT flow network (MonST3R's ``RAFT2``).

    Call as MonST3R does: ``flow = net(img1, img2, iters=20, test_mode=True)[1]`` with images ``[N, 3, H, W]``
    in 0..255; returns ``[flow_predictions, final_flow]`` (list of ``iters + 1`` tensors ``[N, 2, H, W]``, then the
    last one) in test mode, else a dict with ``final``, ``flow``, ``info`` ``[N, 4, H, W]`` and ``nf``.
    """

    def __init__(self, cfg: Optional[SEARAFTConfig] = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or SEARAFTConfig()
        d = cfg.dim
        self.cnet = ResNetEncoder(6, 2 * d, cfg)
        self.init_conv = nn.Conv2d(2 * d, 2 * d, 3, padding=1)
        self.upsample_weight = nn.Sequential(nn.Conv2d(d, 2 * d, 3, padding=1), nn.ReLU(inplace=True),
                                             nn.Conv2d(2 * d, 64 * 9, 1))
        self.flow_head = nn.Sequential(nn.Conv2d(d, 2 * d, 3, padding=1), nn.ReLU(inplace=True),
                                       nn.Conv2d(2 * d, 6, 3, padding=1))
        self.fnet = ResNetEncoder(3, 2 * d, cfg)
        self.update_block = UpdateBlock(cfg)

    def _predict(self, net: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Heads on the hidden state -> (delta flow ``[N,2,h,w]``, info ``[N,4,h,w]``, mask ``[N,576,h,w]``)."""
        out = self.flow_head(net)
        mask = 0.25 * self.upsample_weight(net)
        return out[:, :2], out[:, 2:], mask

    def forward(self, image1: torch.Tensor, image2: torch.Tensor, iters: Optional[int] = None,
                flow_gt: Optional[torch.Tensor] = None, test_mode: bool = False) -> Union[List, Dict[str, object]]:
        cfg = self.cfg
        iters = cfg.iters if iters is None else iters
        n, _, ht, wd = image1.shape
        if flow_gt is None:
            flow_gt = torch.zeros(n, 2, ht, wd, device=image1.device, dtype=image1.dtype)
        image1 = 2 * (image1 / 255.0) - 1.0
        image2 = 2 * (image2 / 255.0) - 1.0
        padder = InputPadder(image1.shape)
        hp, wp = padder.padded_shape
        if min(hp, wp) < MIN_PADDED_SIZE:
            raise Monst3rInputError(
                f"SEA-RAFT needs images of at least {MIN_PADDED_SIZE - 7} px per side, got {ht}x{wd}; use larger images")
        image1, image2 = padder.pad(image1, image2)

        c = self.init_conv(self.cnet(torch.cat([image1, image2], dim=1)))
        net, context = torch.split(c, [cfg.dim, cfg.dim], dim=1)
        flow8, info, mask = self._predict(net)  # direct initial prediction (no zero init)
        fmap1 = self.fnet(image1)
        fmap2 = self.fnet(image2)
        corr_fn = CorrPyramid(fmap1.float(), fmap2.float(), cfg.corr_levels, cfg.radius)
        h8, w8 = fmap1.shape[-2:]
        grid = coords_grid(n, h8, w8, device=image1.device, dtype=flow8.dtype)

        flows, infos = [], []

        def record(flow8: torch.Tensor, info: torch.Tensor, mask: torch.Tensor) -> None:
            if test_mode:  # MonST3R's path: the flow only
                flows.append(padder.unpad(convex_upsample(8 * flow8, mask)))
                return
            up = padder.unpad(convex_upsample(torch.cat([8 * flow8, info], dim=1), mask))  # same weights for both
            flows.append(up[:, :2])
            infos.append(up[:, 2:])

        record(flow8, info, mask)
        for _ in range(iters):
            flow8 = flow8.detach()
            corr = corr_fn((grid + flow8).detach())
            net = self.update_block(net, context, corr, flow8)
            dflow, info, mask = self._predict(net)
            flow8 = flow8 + dflow
            record(flow8, info, mask)

        if test_mode:
            return [flows, flows[-1]]
        nf = [laplace_mixture_nll(f, i, flow_gt, cfg.var_min, cfg.var_max, cfg.use_var) for f, i in zip(flows, infos)]
        return {"final": flows[-1], "flow": flows, "info": infos, "nf": nf}
