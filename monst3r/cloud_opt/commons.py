"""Helpers shared by the global-alignment modes: edge keys, confidence transforms, schedules, stacking.

Facts follow ``optimizer.md`` sections 3, 4.1 and 9.
"""
from __future__ import annotations

import math
from typing import Callable, Iterable, Sequence

import torch

from monst3r.errors import Monst3rInputError


def edge_str(i: int, j: int) -> str:
    """Edge key ``"i_j"``."""
    return f"{i}_{j}"


def i_j_ij(ij: tuple[int, int]) -> tuple[str, tuple[int, int]]:
    return edge_str(*ij), ij


def compute_edge_scores(edges: Sequence[tuple[int, int]], conf_i: Sequence[torch.Tensor],
                        conf_j: Sequence[torch.Tensor]) -> dict[tuple[int, int], float]:
    """Score of each directed edge = mean(conf_i) * mean(conf_j) (raw confidences), optimizer.md 8.1."""
    return {(int(i), int(j)): float(ci.mean() * cj.mean()) for (i, j), ci, cj in zip(edges, conf_i, conf_j)}


def get_conf_trf(mode: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """Confidence transform: 'log' (default), 'sqrt', 'm1' (c - 1), 'id'/'none'."""
    if mode == "log":
        return torch.log
    if mode == "sqrt":
        return torch.sqrt
    if mode == "m1":
        return lambda x: x - 1
    if mode in ("id", "none"):
        return lambda x: x
    raise ValueError(f"bad conf mode {mode!r}; use one of log, sqrt, m1, id, none")


def l1_dist(a: torch.Tensor, b: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Euclidean distance ``|a - b|_2`` (over the last dim) times ``weight`` (named 'l1' by the original)."""
    return torch.linalg.vector_norm(a - b, dim=-1) * weight


def l2_dist(a: torch.Tensor, b: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distance times ``weight``."""
    return (a - b).square().sum(dim=-1) * weight


ALL_DISTS = dict(l1=l1_dist, l2=l2_dist)


# ----------------------------------------------------------------------------------------------------------
# learning-rate schedules (optimizer.md section 9); t in [0, 1]
# ----------------------------------------------------------------------------------------------------------
def linear_schedule(t: float, start: float, end: float) -> float:
    return start + (end - start) * t


def cosine_schedule(t: float, lr_start: float, lr_end: float) -> float:
    return lr_end + (lr_start - lr_end) * (1 + math.cos(t * math.pi)) / 2


def cycled_linear_schedule(t: float, lr_start: float, lr_end: float, num_cycles: int = 2) -> float:
    """Linear decay restarted ``num_cycles`` times; t = 1 maps to the end of the last cycle."""
    tc = t * num_cycles
    frac = tc - int(tc) if tc < num_cycles else 1.0
    return linear_schedule(frac, lr_start, lr_end)


def get_lr(schedule: str, t: float, lr: float, lr_min: float) -> float:
    """Learning rate of ``schedule`` ('cosine', 'linear', 'cycle', 'cycleK') at progress ``t``."""
    if schedule == "cosine":
        return cosine_schedule(t, lr, lr_min)
    if schedule == "linear":
        return linear_schedule(t, lr, lr_min)
    if schedule.startswith("cycle"):
        k = int(schedule[5:]) if len(schedule) > 5 else 2
        return cycled_linear_schedule(t, lr, lr_min, num_cycles=k)
    raise ValueError(f"bad lr schedule {schedule!r}; use 'cosine', 'linear' or 'cycleK'")


# ----------------------------------------------------------------------------------------------------------
# stacking with padding (ParameterStack of the original)
# ----------------------------------------------------------------------------------------------------------
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


def check_edges(edges: Sequence[tuple[int, int]]) -> int:
    """Validate the edge list; return the number of images (indices must be exactly 0..n-1)."""
    if len(edges) == 0:
        raise Monst3rInputError("no image pairs given to the global aligner; pass at least one pair "
                                "(make_pairs on 2 or more images)")
    idx = sorted({int(i) for e in edges for i in e})
    n = len(idx)
    if idx != list(range(n)):
        raise Monst3rInputError(f"image indices of the pairs must be exactly 0..{n - 1}, got {idx[:10]}"
                                f"{'...' if n > 10 else ''}; renumber the views' 'idx' consecutively")
    for i, j in edges:
        if i == j:
            raise Monst3rInputError(f"pair ({i}, {j}) pairs an image with itself; the global aligner needs "
                                    "pairs of distinct images (use a scene graph without self-pairs)")
    return n


def is_symmetrized(edges: Sequence[tuple[int, int]]) -> bool:
    """True when the set of edges equals the set of reversed edges."""
    s = {(int(i), int(j)) for i, j in edges}
    return s == {(j, i) for i, j in s}


def reverse_edge_index(edges: Sequence[tuple[int, int]]) -> list[int] | None:
    """Index of the reverse of each edge, or None when some edge has no reverse."""
    pos = {(int(i), int(j)): k for k, (i, j) in enumerate(edges)}
    out = []
    for i, j in edges:
        k = pos.get((int(j), int(i)))
        if k is None:
            return None
        out.append(k)
    return out
