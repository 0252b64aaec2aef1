"""Scene graphs: which image pairs the network sees (spec model.md 7).

``make_pairs(imgs, scene_graph, prefilter, symmetrize)`` returns a list of ``(view_i, view_j)`` tuples of the
view dicts themselves. Graph strings: ``complete``, ``swin[-N][-noncyclic]``, ``swinstride-N``,
``swin2stride-N``, ``swinskip_start-N``, ``logwin[-N][-noncyclic]``, ``oneref[-K]``.

Set-based graphs insert the same tuples in the same order into a Python set as the original, so the edge order
(CPython set iteration order) is identical, and so is everything downstream that depends on it.
"""
from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

from monst3r.errors import Monst3rInputError

Pair = Tuple[Dict, Dict]


def _winsize(scene_graph: str) -> int:
    try:
        return int(scene_graph.split("-")[1])
    except (IndexError, ValueError):
        return 3


def _pair_indices(n: int, scene_graph: str, faithful: bool) -> List[Tuple[int, int]]:
    if scene_graph == "complete":
        return [(i, j) for i in range(n) for j in range(i)]
    if scene_graph.startswith("swin"):
        cyclic = not scene_graph.endswith("noncyclic")
        winsize = _winsize(scene_graph)
        stride = 2 if scene_graph.startswith("swinstride") else 3 if scene_graph.startswith("swin2stride") else 1
        start = 2 if scene_graph.startswith("swinskip_start") else 1
        pairs = set()
        for i in range(n):
            for off in range(start, stride * winsize + start, stride):
                k = (i + off) % n if cyclic else i + off
                if k >= n:
                    continue
                pairs.add((i, k) if i < k else (k, i))
        return list(pairs)
    if scene_graph.startswith("logwin"):
        cyclic = not scene_graph.endswith("noncyclic")
        offsets = [2 ** k for k in range(_winsize(scene_graph))]
        pairs = set()
        for i in range(n):
            for j in [i - o for o in offsets] + [i + o for o in offsets]:
                if cyclic:
                    j = j % n
                if j < 0 or j >= n or j == i:
                    continue
                pairs.add((i, j) if i < j else (j, i))
        return list(pairs)
    if scene_graph.startswith("oneref"):
        refid = int(scene_graph.split("-")[1]) if "-" in scene_graph else 0
        if not 0 <= refid < max(n, 1):
            raise Monst3rInputError(f"scene graph {scene_graph!r}: reference {refid} is out of range for {n} images")
        return [(refid, j) for j in range(n)]
    if faithful:
        return []  # the original silently returns no pairs
    raise Monst3rInputError(
        f"unknown scene graph {scene_graph!r}: use complete, swin-N, swinstride-N, swin2stride-N, logwin-N or "
        "oneref-K (optionally with the -noncyclic suffix)")


def _keeps_asymmetric(scene_graph: str, faithful: bool) -> bool:
    """Graphs that are not symmetrised: ``oneref*`` and ``swin-1``.

    BUG FIX (spec model.md 7): the original tests the prefix ``swin-1``, which also matches swin-10..19, swin-100..
    so those were silently not symmetrised. We only exempt window size 1; ``faithful=True`` restores the prefix test.
    """
    if scene_graph.startswith("oneref"):
        return True
    if faithful:
        return scene_graph.startswith("swin-1")
    return scene_graph.startswith("swin-") and _winsize(scene_graph) == 1 and scene_graph.split("-")[1] == "1"


def _prefilter(pairs: List[Pair], prefilter: str) -> List[Pair]:
    if prefilter.startswith("seq"):
        k = int(prefilter[3:])
        return [(a, b) for a, b in pairs if abs(a["idx"] - b["idx"]) <= k]
    if prefilter.startswith("cyc"):
        k = int(prefilter[3:])
        n = 1 + max(max(a["idx"], b["idx"]) for a, b in pairs) if pairs else 0

        def dist(i, j):
            return min(abs(i - j), abs(i + n - j), abs(i - n - j))

        return [(a, b) for a, b in pairs if dist(a["idx"], b["idx"]) <= k]
    raise Monst3rInputError(f"unknown prefilter {prefilter!r} (use seqK or cycK)")


def make_pairs(imgs: Sequence[Dict], scene_graph: str = "complete", prefilter=None, symmetrize: bool = True,
               force_symmetrize: bool = False, faithful: bool = False) -> List[Pair]:
    """Pairs of views for ``scene_graph``.

    Symmetrisation appends the reversed copy of every pair (same order) when ``symmetrize`` and the graph is not
    ``oneref``/``swin-1``, or when there are exactly 2 images (the two-view path relies on it), or when forced.
    ``faithful=True`` reproduces two documented bugs of the original (``swin-1`` prefix test; unknown graph ->
    no pairs) for comparisons.
    """
    n = len(imgs)
    pairs = [(imgs[i], imgs[j]) for i, j in _pair_indices(n, scene_graph, faithful)]
    if (symmetrize and not _keeps_asymmetric(scene_graph, faithful)) or n == 2 or force_symmetrize:
        pairs = pairs + [(b, a) for a, b in pairs]
    if prefilter:
        pairs = _prefilter(pairs, prefilter)
    return pairs
