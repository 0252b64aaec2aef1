"""2-D rotary position embedding (RoPE2D) and patch-grid positions.

Facts (spec model.md 1.4, 1.6): the frequency base comes from the ``pos_embed`` string (``'RoPE100'`` ->
100.0); the first half of every head vector is rotated with the row index y, the second half with the column
index x; inside one half of size ``D`` the rotation pairs are ``(k, k + D/2)`` (rotate-half convention, not
interleaved pairs), with angle ``p * base ** (-2k / D)``.
"""
from __future__ import annotations

import logging
from typing import Dict, Tuple

import torch
from torch import nn

log = logging.getLogger(__name__)


def parse_rope_frequency(pos_embed: str) -> float:
    """``'RoPE100'`` -> 100.0. Raises ValueError for strings that are not ``RoPE<number>``."""
    if not isinstance(pos_embed, str) or not pos_embed.startswith("RoPE"):
        raise ValueError(f"pos_embed must be 'RoPE<freq>' (e.g. 'RoPE100'), got {pos_embed!r}")
    return float(pos_embed[len("RoPE"):])


class RoPE2D(nn.Module):
    """Pure-PyTorch 2-D RoPE.

    ``forward(tokens [B, heads, N, Dh], positions [B, N, 2] int64 (y, x)) -> [B, heads, N, Dh]``.
    Angle tables are built in float32 and cast to the token dtype (as the original does), cached per
    (half-dim, length, device, dtype).
    """

    def __init__(self, freq: float = 100.0, F0: float = 1.0):
        super().__init__()
        self.base = float(freq)
        self.F0 = float(F0)
        self._cache: Dict[Tuple[int, int, torch.device, torch.dtype], Tuple[torch.Tensor, torch.Tensor]] = {}

    def _cos_sin(self, dim: int, length: int, device: torch.device, dtype: torch.dtype):
        key = (dim, length, device, dtype)
        if key not in self._cache:
            inv_freq = 1.0 / (self.base ** (torch.arange(0, dim, 2, device=device).float() / dim))
            t = torch.arange(length, device=device, dtype=inv_freq.dtype)
            ang = (self.F0 * torch.outer(t, inv_freq)).to(dtype)
            ang = torch.cat((ang, ang), dim=-1)  # [length, dim]
            self._cache[key] = (ang.cos(), ang.sin())
        return self._cache[key]

    @staticmethod
    def _rotate(t: torch.Tensor, pos: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        # t [B,h,N,D], pos [B,N] -> rotated t
        c = nn.functional.embedding(pos, cos)[:, None]  # [B,1,N,D]
        s = nn.functional.embedding(pos, sin)[:, None]
        t1, t2 = t.chunk(2, dim=-1)
        return t * c + torch.cat((-t2, t1), dim=-1) * s

    def forward(self, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        if tokens.size(3) % 4 != 0:
            raise ValueError("RoPE2D needs a head dimension divisible by 4")
        half = tokens.size(3) // 2
        assert positions.ndim == 3 and positions.shape[-1] == 2, "positions must be [B, N, 2]"
        cos, sin = self._cos_sin(half, int(positions.max()) + 1, tokens.device, tokens.dtype)
        y, x = tokens.chunk(2, dim=-1)
        y = self._rotate(y, positions[:, :, 0], cos, sin)
        x = self._rotate(x, positions[:, :, 1], cos, sin)
        return torch.cat((y, x), dim=-1)


def make_rope(pos_embed: str) -> nn.Module:
    """RoPE module for ``pos_embed`` (``'RoPE100'``): the compiled cuRoPE when it imports, else pure PyTorch.

    The pure-PyTorch path is the default; ``croco.models.curope`` is tried only when the environment variable
    ``MONST3R_CUROPE=1`` is set, so results never depend silently on a compiled extension.
    """
    freq = parse_rope_frequency(pos_embed)
    import os

    if os.environ.get("MONST3R_CUROPE") == "1":
        try:
            from croco.models.curope import cuRoPE2D  # compiled extension, optional

            return cuRoPE2D(freq=freq)
        except ImportError as exc:  # pragma: no cover - depends on a compiled extension
            log.warning("cuRoPE2D requested but not importable (%s); using the PyTorch RoPE2D", exc)
    return RoPE2D(freq=freq)


class PositionGetter:
    """Patch-grid positions: ``(b, h, w, device) -> [b, h*w, 2]`` int64 with (y, x) in row-major order."""

    def __init__(self):
        self._cache: Dict[Tuple[int, int, torch.device], torch.Tensor] = {}

    def __call__(self, b: int, h: int, w: int, device: torch.device) -> torch.Tensor:
        key = (h, w, torch.device(device))
        if key not in self._cache:
            y = torch.arange(h, device=device)
            x = torch.arange(w, device=device)
            self._cache[key] = torch.cartesian_prod(y, x)  # [h*w, 2]
        return self._cache[key].view(1, h * w, 2).expand(b, -1, 2).clone()
