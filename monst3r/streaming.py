"""Streaming window-wise reconstruction: long videos in memory bounded by the window, time linear in frames.

The original's ``--window_wise`` mode (``PointCloudOptimizer(window_wise=True)``, kept faithful in
``monst3r.cloud_opt``) still runs pair inference on the *whole* video first, keeps every pair's pointmaps
(about 4.7 MB per pair at 512x288 in float32, ~10 pairs per frame) and initialises all frames with one global
minimum spanning tree: its memory grows with the video. Its own continuation mechanism
(``--prev_output_dir``: the last ``int(window_size * overlap_ratio)`` frames of a previous result are re-used,
frozen, as the first frames of the next run) is what users chain by hand for long videos.

:func:`reconstruct_streaming` does that chaining in one process and without the round trip through result
folders (poses, depths and intrinsics of the overlap frames are passed in memory, at full precision):

    chunk 0:  frames [0, ws)                          all optimised (window-wise with one window, MST init)
    chunk k:  frames [s, s + ws), the first ``ov`` of which are the previous chunk's last frames, frozen
              (``prev_video_results``: init_from_previous_result, then only the new frames are optimised)
    last:     starts at N - ws so that it is a full window (more frozen context, as the original's last window)

Each chunk builds its own pairs, predictions, flows, masks and optimizer and frees them before the next, so
the GPU and host working memory depend on ``window_size`` and the frame size only; the result arrays
(depth, confidences, mask, colour: ~25 bytes per pixel per frame) are the only state that grows with the video.
Each chunk's output equals what ``demo.py --window_wise --prev_output_dir <previous chunk>`` computes on those
frames, apart from the text-file precision of the previous poses.
"""
from __future__ import annotations

import argparse
import copy
import logging
from typing import Dict, List, Optional

import numpy as np
import torch

from monst3r.errors import Monst3rInputError

log = logging.getLogger(__name__)


def stream_chunks(n_frames: int, window_size: int, overlap: int, n_prev: int = 0) -> list[tuple[int, int, int]]:
    """Chunks ``(start, end, n_frozen)`` covering ``n_frames`` frames, the first ``n_prev`` of which are already
    reconstructed (a previous result). Every chunk but possibly a lone first one has ``window_size`` frames; the
    frames ``[start, start + n_frozen)`` of a chunk are frozen context, the rest are new.

    >>> stream_chunks(10, 4, 2)
    [(0, 4, 0), (2, 6, 2), (4, 8, 2), (6, 10, 2)]
    >>> stream_chunks(9, 4, 2)
    [(0, 4, 0), (2, 6, 2), (4, 8, 2), (5, 9, 3)]
    """
    ws, ov = int(window_size), int(overlap)
    if n_frames - n_prev < 1:
        raise Monst3rInputError("streaming needs at least one new frame after the previous result's frames")
    if n_frames <= ws:
        return [(0, n_frames, n_prev)]
    if ws < 3:
        raise Monst3rInputError(f"--window_size {ws}: streaming needs windows of at least 3 frames")
    if not 1 <= ov < ws:
        raise Monst3rInputError(f"window overlap of {ov} frames (window {ws}): streaming needs 1 <= overlap < "
                                "window size; use a --window_overlap_ratio between 1/window_size and 1")
    if n_prev:
        start = max(0, n_prev - ov)
        chunks = [(start, start + ws, n_prev - start)]
        if start + ws >= n_frames:
            return [(n_frames - ws, n_frames, n_prev - (n_frames - ws))]
    else:
        chunks = [(0, ws, 0)]
    while chunks[-1][1] < n_frames:
        end = chunks[-1][1]
        start = end - ov
        if start + ws > n_frames:  # last chunk: a full window ending at the last frame
            start = n_frames - ws
        chunks.append((start, start + ws, end - start))
    return chunks


def _chunk_views(imgs: List[Dict], start: int, end: int) -> List[Dict]:
    """Shallow copies of the views ``start..end-1`` re-indexed from 0 (the inputs are not modified)."""
    return [dict(v, idx=k) for k, v in enumerate(imgs[start:end])]


def reconstruct_streaming(imgs: List[Dict], model, args: argparse.Namespace, device: torch.device, timer,
                          prev_video_results: Optional[dict] = None, flow_model=None, on_chunk=None,
                          predict=None):
    """Reconstruct a long video chunk by chunk (see the module docstring); returns ``(Reconstruction, None)``.

    imgs: view dicts of ``load_images`` (the first ``len(prev_video_results['poses'])`` are a previous result's
    frames when given). args: the demo's options (``window_size``, ``window_overlap_ratio`` and everything
    ``pipeline.reconstruct`` reads). on_chunk: optional ``callable(index, (start, end, n_frozen))`` called after
    each chunk (benchmarks, progress). predict: see ``pipeline.reconstruct`` (the pairs it receives hold the
    chunk's views, whose ``idx`` count from 0 within the chunk).
    """
    from monst3r.pipeline import reconstruct
    from monst3r.result import Reconstruction

    N = len(imgs)
    ws = int(args.window_size)
    ov = int(ws * args.window_overlap_ratio)
    n_prev0 = len(prev_video_results["poses"]) if prev_video_results is not None else 0
    chunks = stream_chunks(N, ws, ov, n_prev0)

    # per-frame state of the frames reconstructed so far: c2w [4, 4], depth [H, W], K [3, 3]
    poses: Dict[int, np.ndarray] = {}
    depths: Dict[int, np.ndarray] = {}
    Ks: Dict[int, np.ndarray] = {}
    if prev_video_results is not None:
        K0 = np.asarray(prev_video_results["intrinsics"], dtype=np.float32).reshape(3, 3)
        for k in range(n_prev0):
            p = np.asarray(prev_video_results["poses"][k], dtype=np.float32)
            poses[k] = p  # 7-vector (TUM) or 4x4: both accepted by the aligner
            d = prev_video_results["depths"][k]
            depths[k] = d.detach().cpu().numpy() if isinstance(d, torch.Tensor) else np.asarray(d)
            Ks[k] = K0
    parts: list = []
    chunk_args = copy.copy(args)
    chunk_args.window_wise = True
    for c, (s, e, n_frozen) in enumerate(chunks):
        log.info("streaming chunk %d/%d: frames [%d, %d), %d frozen", c + 1, len(chunks), s, e, n_frozen)
        prev = None
        if n_frozen:
            frozen = range(s, s + n_frozen)
            prev = dict(poses=[poses[k] for k in frozen], depths=[torch.from_numpy(depths[k]) for k in frozen],
                        intrinsics=torch.from_numpy(Ks[s + n_frozen - 1]))
        chunk_args.window_size = e - s
        rec, scene = reconstruct(_chunk_views(imgs, s, e), model, chunk_args, device, timer, prev, flow_model,
                                 offload_model=False, predict=predict)
        del scene
        rec = rec.copy()  # own the arrays: nothing of this chunk's optimizer stays alive
        for k in range(rec.n_frames):
            g = s + n_frozen + k
            poses[g], depths[g], Ks[g] = rec.poses[k], np.asarray(rec.depths[k]), rec.intrinsics[k]
        keep_from = chunks[c + 1][0] if c + 1 < len(chunks) else e
        for k in [k for k in poses if k < keep_from]:  # only the next chunk's frozen frames are needed again
            del poses[k], depths[k], Ks[k]
        parts.append(rec)
        if device.type == "cuda":
            torch.cuda.empty_cache()
        if on_chunk is not None:
            on_chunk(c, (s, e, n_frozen))
    meta = dict(parts[-1].meta, source="streaming", chunks=[list(ch) for ch in chunks],
                final_losses=[p.meta.get("final_loss") for p in parts])
    return Reconstruction.concatenate(parts, meta=meta), None
