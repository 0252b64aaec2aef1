"""Input padding to a multiple of 8 and the matching crop (RAFT / SEA-RAFT ``InputPadder`` behaviour).

Mode ``"sintel"`` (default, what SEA-RAFT and MonST3R use) centres the padding:
``[left, right, top, bottom] = [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2]``; any other mode (``"kitti"``) pads
``[pw // 2, pw - pw // 2, 0, ph]``. Padding is ``F.pad(..., mode="replicate")``.
"""
from __future__ import annotations

from typing import List, Sequence

import torch
import torch.nn.functional as F


class InputPadder:
    """Pads images so that H and W are divisible by ``divisor`` and crops results back.

    Args:
        shape: the shape of the tensors to pad, ``(..., H, W)``.
        mode: ``"sintel"`` (centred) or ``"kitti"`` (all vertical padding at the bottom).
        divisor: the multiple to pad to (8 for RAFT-family networks).
    """

    def __init__(self, shape: Sequence[int], mode: str = "sintel", divisor: int = 8) -> None:
        self.ht, self.wd = int(shape[-2]), int(shape[-1])
        pad_ht = (-self.ht) % divisor
        pad_wd = (-self.wd) % divisor
        if mode == "sintel":
            self._pad = [pad_wd // 2, pad_wd - pad_wd // 2, pad_ht // 2, pad_ht - pad_ht // 2]
        else:
            self._pad = [pad_wd // 2, pad_wd - pad_wd // 2, 0, pad_ht]

    @property
    def pad_amounts(self) -> List[int]:
        """``[left, right, top, bottom]`` in pixels."""
        return list(self._pad)

    @property
    def padded_shape(self) -> tuple:
        """``(Hp, Wp)`` after padding."""
        return (self.ht + self._pad[2] + self._pad[3], self.wd + self._pad[0] + self._pad[1])

    def pad(self, *inputs: torch.Tensor) -> List[torch.Tensor]:
        """Replicate-pad each ``[B, C, H, W]`` tensor to ``[B, C, Hp, Wp]``."""
        if not any(self._pad):
            return list(inputs)
        return [F.pad(x, self._pad, mode="replicate") for x in inputs]

    def unpad(self, x: torch.Tensor) -> torch.Tensor:
        """Crop ``[..., Hp, Wp]`` back to ``[..., H, W]``."""
        ht, wd = x.shape[-2:]
        left, right, top, bottom = self._pad
        return x[..., top:ht - bottom, left:wd - right]
