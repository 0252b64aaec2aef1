"""Edges of the pair graph: keys ``"i_j"``, scores, validation, symmetry (optimizer.md sections 3 and 8.1)."""
from __future__ import annotations

from typing import Sequence

import torch

from monst3r.errors import Monst3rInputError


def edge_str(i: int, j: int) -> str:
    """Edge key ``"i_j"``."""
    return f"{i}_{j}"


def compute_edge_scores(edges: Sequence[tuple[int, int]], conf_i: Sequence[torch.Tensor],
                        conf_j: Sequence[torch.Tensor]) -> dict[tuple[int, int], float]:
    """Score of each directed edge = mean(conf_i) * mean(conf_j) (raw confidences), optimizer.md 8.1."""
    return {(int(i), int(j)): float(ci.mean() * cj.mean()) for (i, j), ci, cj in zip(edges, conf_i, conf_j)}


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


def is_symmetric_edge_set(edges: Sequence[tuple[int, int]]) -> bool:
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
