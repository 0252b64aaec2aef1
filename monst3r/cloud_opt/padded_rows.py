"""Stacking per-image / per-pair maps into zero-padded row buffers ``[n, maxHW, ...]`` (the original's
ParameterStack), and finiteness checks of such buffers."""
from __future__ import annotations

from typing import Iterable, Sequence

import torch


def ravel_pad_stack(tensors: Iterable[torch.Tensor], fill: int, trailing: int = 0) -> torch.Tensor:
    """Ravel each ``[H, W, *rest]`` to ``[H*W, *rest]``, zero-pad to ``fill`` rows and stack -> ``[n, fill, *rest]``.

    ``trailing`` = number of trailing dims kept (0 for maps, 1 for pointmaps). Output float32, detached.
    """
    out = []
    for t in tensors:
        t = t.detach().float()
        flat = t.reshape(-1, *t.shape[t.ndim - trailing:]) if trailing else t.reshape(-1)
        if flat.shape[0] < fill:
            pad = flat.new_zeros((fill - flat.shape[0], *flat.shape[1:]))
            flat = torch.cat((flat, pad), dim=0)
        out.append(flat)
    return torch.stack(out, dim=0)


def stack_rows(items: Sequence[torch.Tensor], fill: int, channels: int = 0, device=None,
               chunk_pixels: int = 1 << 24) -> torch.Tensor:
    """Ravel each ``[H, W]`` (``channels`` = 0) or ``[H, W, C]`` item into one row of a new float32 buffer on
    ``device``: ``[n, fill]`` or channels-first ``[n, C, fill]``, zero padded.

    Equal to ``ravel_pad_stack(items, fill, 1).transpose(1, 2)`` (resp. ``ravel_pad_stack(items, fill)``) but
    built chunk by chunk: the only full-size allocation is the result, on its device.
    """
    n = len(items)
    dev = torch.device(device) if device is not None else (items[0].device if n else torch.device("cpu"))
    C = int(channels)
    out = torch.empty((n, C, fill) if C else (n, fill), dtype=torch.float32, device=dev)
    size = fill * (C or 1)
    step = max(1, chunk_pixels // max(size, 1))
    for a in range(0, n, step):
        part = items[a:a + step]
        if all(t.numel() == size for t in part):
            blk = torch.stack([t.detach().reshape(fill, C) if C else t.detach().reshape(fill) for t in part])
            blk = blk.to(device=dev, dtype=torch.float32)
            out[a:a + len(part)] = blk.transpose(1, 2) if C else blk
            continue
        for k, t in enumerate(part):
            flat = t.detach().reshape(-1, C) if C else t.detach().reshape(-1)
            m = flat.shape[0]
            if C:
                out[a + k, :, :m] = flat.to(device=dev, dtype=torch.float32).T
                out[a + k, :, m:] = 0
            else:
                out[a + k, :m] = flat.to(device=dev, dtype=torch.float32)
                out[a + k, m:] = 0
    return out


def nonfinite_rows(buf: torch.Tensor, chunk_rows: int = 64) -> torch.Tensor:
    """``[n]`` bool: rows of ``buf`` containing NaN or inf (checked chunk by chunk, one sync at the end).

    A row is finite iff its min and max are (both propagate NaN): one reduction pass, no boolean temporary."""
    bad = torch.zeros(buf.shape[0], dtype=torch.bool, device=buf.device)
    for a in range(0, buf.shape[0], chunk_rows):
        if buf[a:a + chunk_rows].numel() == 0:
            continue
        mn, mx = torch.aminmax(buf[a:a + chunk_rows].flatten(1), dim=1)
        bad[a:a + chunk_rows] = ~(torch.isfinite(mn) & torch.isfinite(mx))
    return bad
