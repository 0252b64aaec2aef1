"""Optional compiled RoPE kernel.

No compiled kernel ships with this repository: the pure-PyTorch ``croco.models.pos_embed.RoPE2D`` is the
default and the only tested path. If an extension module named ``curope`` (exposing ``rope_2d(tokens, positions,
base, F0)`` operating in place on ``[B, N, heads, Dh]`` tokens) is installed, ``cuRoPE2D`` wraps it; otherwise
importing ``cuRoPE2D`` raises ImportError and ``croco.models.pos_embed.make_rope`` falls back to PyTorch.
"""
import torch
from torch import nn

import curope as _ext  # noqa: F401  (ImportError here means: use the PyTorch RoPE2D)


class cuRoPE2D(nn.Module):  # pragma: no cover - needs a compiled extension
    """Same interface as RoPE2D: ``(tokens [B, heads, N, Dh], positions [B, N, 2]) -> tokens``."""

    def __init__(self, freq: float = 100.0, F0: float = 1.0):
        super().__init__()
        self.base, self.F0 = float(freq), float(F0)

    def forward(self, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        t = tokens.transpose(1, 2).contiguous()  # [B, N, heads, Dh]
        _ext.rope_2d(t, positions.contiguous(), self.base, self.F0)
        return t.transpose(1, 2)
