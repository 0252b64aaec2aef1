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
              (``prev_video_results``: SceneInit._init_from_previous_result, then only the new frames are optimised)
    last:     starts at N - ws so that it is a full window (more frozen context, as the original's last window)

Each chunk builds its own pairs, predictions, flows, masks and optimizer and frees them before the next, so
the GPU and host working memory depend on ``window_size`` and the frame size only; the result arrays
(depth, confidences, mask, colour: ~25 bytes per pixel per frame) are the only state that grows with the video.
Each chunk's output equals what ``demo.py --window_wise --prev_output_dir <previous chunk>`` computes on those
frames, apart from the text-file precision of the previous poses.
"""
from __future__ import annotations

import logging
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import torch

from monst3r.config import ReconstructConfig
from monst3r.errors import Monst3rInputError
from monst3r.inference import collate_with_cat, same_size
from monst3r.reconstruct import load_flow_network, make_view_pairs, predict_pairs, reconstruct
from monst3r.result import Reconstruction
from monst3r.utils.timing import StageTimer

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


def _row(x, r: int):
    """Row ``r`` of an inference()-style output, keeping a batch dimension of 1 (tensors are copied so that
    the cached row does not keep its whole batch alive)."""
    if isinstance(x, torch.Tensor):
        return x[r:r + 1].clone()
    if isinstance(x, dict):
        return {k: _row(v, r) for k, v in x.items()}
    if isinstance(x, list):
        return [x[r]]
    return x


class PairCache:
    """Predictions and optical flows of frame pairs, computed once for the chunks that share them.

    Consecutive chunks overlap by ``ov`` frames; with the chunk graph's pairs among those frames being the same
    pairs of the same images, their network predictions and flows are taken from the previous chunk instead of
    recomputed (about half of the inference and flow work with the default 50% overlap). Entries are keyed by
    the global frame indices and dropped once no later chunk can use them (:meth:`prune`).
    """

    def __init__(self, model, device: torch.device, cfg: ReconstructConfig,
                 flow_model: Optional[torch.nn.Module] = None):
        """cfg: batch size, precision and flow weights of the predictions; flow_model: built on first use when
        None."""
        self.start = 0  # global index of the current chunk's first frame (set_chunk)
        self.model, self.device, self.cfg, self.flow_model = model, device, cfg, flow_model
        self.preds: Dict[tuple, dict] = {}
        self.flows: Dict[tuple, tuple] = {}
        self.computed_pairs = self.reused_pairs = self.computed_flows = self.reused_flows = 0

    def set_chunk(self, start: int) -> None:
        """The pairs passed next hold views of a chunk starting at global frame ``start`` (their ``idx`` count
        from 0 within the chunk)."""
        self.start = int(start)

    def _key(self, a: Dict, b: Dict) -> tuple:
        return self.start + int(a["idx"]), self.start + int(b["idx"])

    def predict(self, pairs) -> dict:
        """``inference()`` output for ``pairs`` (chunk views), running the network on the new pairs only."""
        if not same_size(pairs):  # per-pair list outputs: no caching
            return predict_pairs(pairs, self.model, self.cfg, self.device)
        keys = [self._key(x, y) for x, y in pairs]
        todo = [(k, p) for k, p in zip(keys, pairs) if k not in self.preds]
        self.computed_pairs += len(todo)
        self.reused_pairs += len(keys) - len(todo)
        if todo:
            out = predict_pairs([p for _, p in todo], self.model, self.cfg, self.device)
            for r, (k, _) in enumerate(todo):
                self.preds[k] = _row(out, r)
            del out
        out = collate_with_cat([self.preds[k] for k in keys])
        out["view1"]["idx"] = [x["idx"] for x, _ in pairs]  # chunk-local indices
        out["view2"]["idx"] = [y["idx"] for _, y in pairs]
        return out

    def flows_for(self, pairs):
        """``(flow_ij, flow_ji, valid_i, valid_j)`` of every pair (what the optimizer computes itself otherwise:
        the flow network on each unordered pair once, 20 iterations, chunks of 12)."""
        from monst3r.cloud_opt.optical_flow import compute_pair_flows

        keys = [self._key(x, y) for x, y in pairs]
        need, seen = [], set()  # unordered pairs without a cached flow, in first-seen orientation
        for k in keys:
            u = tuple(sorted(k))
            if u not in seen and k not in self.flows and k[::-1] not in self.flows:
                need.append(k)
            seen.add(u)
        self.computed_flows += len(need)
        self.reused_flows += len({tuple(sorted(k)) for k in keys}) - len(need)
        if need:
            if self.flow_model is None:
                self.flow_model = load_flow_network(self.cfg.aligner, self.device)
            frames = sorted({g for k in need for g in k})
            local = {g: n for n, g in enumerate(frames)}
            view_of = {self._key(x, y): (x, y) for x, y in pairs}
            img = {}
            for k in need:
                for g, v in zip(k, view_of[k]):
                    img[g] = (v["img"][0].permute(1, 2, 0).float() * 0.5 + 0.5).clamp(0, 1)
            stack = torch.stack([img[g] for g in frames])
            fij, fji, vi, vj = compute_pair_flows(self.flow_model, stack, [(local[i], local[j]) for i, j in need],
                                                  chunk_size=12, iters=20)
            for n, k in enumerate(need):  # copies: a row view would keep the whole batch alive
                self.flows[k] = (fij[n].clone(), fji[n].clone(), vi[n].clone(), vj[n].clone())
            del fij, fji, vi, vj
        rows = []
        for k in keys:
            if k in self.flows:
                rows.append(self.flows[k])
            else:
                f_ji, f_ij, v_j, v_i = self.flows[k[::-1]]
                rows.append((f_ij, f_ji, v_i, v_j))
        return tuple(torch.stack(col) for col in zip(*rows))

    def prune(self, first_frame: int) -> None:
        """Forget the pairs that involve a frame before ``first_frame``."""
        for store in (self.preds, self.flows):
            for k in [k for k in store if min(k) < first_frame]:
                del store[k]


def _shared_sam2_predictor(cfg: ReconstructConfig, device: torch.device):
    """One SAM2 video predictor for all chunks (building it loads ~900 MB of weights), or None when SAM2
    refinement is off or unavailable (each chunk's optimizer then reports why, as in a single run)."""
    if not cfg.aligner.sam2_mask_refine or cfg.aligner.flow_loss_weight <= 0:
        return None
    from third_party import sam2_adapter

    if sam2_adapter.sam2_unavailable_reason() is not None:
        return None
    ckpt = sam2_adapter.resolve_sam2_checkpoint(cfg.aligner.sam2_checkpoint)
    if not ckpt.is_file():
        return None
    return sam2_adapter.build_video_predictor(sam2_adapter.DEFAULT_SAM2_CONFIG, ckpt, device)


def _follow_chunks(imgs, chunks, cfg: ReconstructConfig, cache, model, device, predict) -> None:
    """The other ranks of a multi-process run: take part in every chunk's (sharded) pair inference, in the same
    order and with the same pairs as rank 0 (which alone optimises)."""
    for c, (s, e, _) in enumerate(chunks):
        views = _chunk_views(imgs, s, e)
        if cache is not None:
            cache.set_chunk(s)
        _, pairs = make_view_pairs(views, cfg)
        if predict is not None:
            predict(pairs)
        elif cache is not None:
            cache.predict(pairs)
            cache.prune(chunks[c + 1][0] if c + 1 < len(chunks) else e)
        else:
            predict_pairs(pairs, model, cfg, device, verbose=False)


class _FrameState:
    """Per-frame results of the frames reconstructed so far (only the next chunk's frozen frames are kept):
    ``poses`` c2w ``[4, 4]`` (or a TUM 7-vector from a previous result), ``depths [H, W]``, ``Ks [3, 3]``."""

    def __init__(self, prev_video_results: Optional[dict]):
        self.poses: Dict[int, np.ndarray] = {}
        self.depths: Dict[int, np.ndarray] = {}
        self.Ks: Dict[int, np.ndarray] = {}
        if prev_video_results is None:
            return
        K0 = np.asarray(prev_video_results["intrinsics"], dtype=np.float32).reshape(3, 3)
        for k in range(len(prev_video_results["poses"])):
            self.poses[k] = np.asarray(prev_video_results["poses"][k], dtype=np.float32)  # 7-vector or 4x4
            d = prev_video_results["depths"][k]
            self.depths[k] = d.detach().cpu().numpy() if isinstance(d, torch.Tensor) else np.asarray(d)
            self.Ks[k] = K0

    def frozen(self, s: int, n_frozen: int) -> Optional[dict]:
        """``prev_video_results`` of the frames ``[s, s + n_frozen)`` (None when there are none)."""
        if not n_frozen:
            return None
        frozen = range(s, s + n_frozen)
        return dict(poses=[self.poses[k] for k in frozen], depths=[torch.from_numpy(self.depths[k]) for k in frozen],
                    intrinsics=torch.from_numpy(self.Ks[s + n_frozen - 1]))

    def store(self, rec, first: int) -> None:
        """The chunk result ``rec``, whose frame 0 is global frame ``first``."""
        for k in range(rec.n_frames):
            g = first + k
            self.poses[g], self.depths[g], self.Ks[g] = rec.poses[k], np.asarray(rec.depths[k]), rec.intrinsics[k]

    def forget_before(self, frame: int) -> None:
        for k in [k for k in self.poses if k < frame]:
            del self.poses[k], self.depths[k], self.Ks[k]


def _run_chunk(imgs, chunk: Tuple[int, int, int], state: _FrameState, model, cfg: ReconstructConfig, device,
               timer, flow_model, cache: Optional[PairCache], predict, sam2_predictor, phases: Dict[str, float]):
    """One chunk ``(start, end, n_frozen)``: window-wise alignment of its frames with the frozen ones from
    ``state``; returns the chunk's Reconstruction (its new frames only) and adds the optimizer phase times."""
    s, e, n_frozen = chunk
    kw = dict(predict=predict)
    if cache is not None:
        cache.set_chunk(s)
        kw = dict(predict=predict or cache.predict, flows_fn=cache.flows_for)
    if sam2_predictor is not None:
        kw["aligner_kw"] = dict(sam2_predictor=sam2_predictor)
    chunk_cfg = cfg.with_aligner(window_wise=True, batchify=False, window_size=e - s)
    rec = reconstruct(_chunk_views(imgs, s, e), model, chunk_cfg, device=device, timer=timer,
                      prev_video_results=state.frozen(s, n_frozen), flow_model=flow_model, offload_model=False,
                      phase_times=phases, **kw)
    return rec.copy()  # own the arrays: nothing of this chunk's optimizer stays alive


def reconstruct_streaming(imgs: List[Dict], model, cfg: ReconstructConfig, *, device: torch.device,
                          timer: Optional[StageTimer] = None, prev_video_results: Optional[dict] = None,
                          flow_model: Optional[torch.nn.Module] = None,
                          on_chunk: Optional[Callable[[int, Tuple[int, int, int]], None]] = None,
                          predict: Optional[Callable[[list], dict]] = None, reuse_pairs: bool = True,
                          sam2_predictor=None) -> Optional[Reconstruction]:
    """Reconstruct a long video chunk by chunk (see the module docstring); returns the :class:`Reconstruction`
    (``meta["timings"]``: the optimizer phase times summed over the chunks), None on the helper ranks of a
    multi-process run.

    imgs: view dicts of ``load_images`` (the first ``len(prev_video_results['poses'])`` are a previous result's
    frames when given). cfg: the settings (``cfg.aligner.window_size`` frames per chunk, consecutive chunks
    overlapping by ``cfg.window_overlap_ratio`` of it). on_chunk: optional ``callable(index, (start, end,
    n_frozen))`` called after each chunk (benchmarks, progress). predict: see :func:`monst3r.reconstruct.reconstruct`
    (the pairs it receives hold the chunk's views, whose ``idx`` count from 0 within the chunk). reuse_pairs: take
    the predictions and flows of the pairs a chunk shares with the previous one from that chunk
    (:class:`PairCache`) instead of recomputing them (same values up to float32 batch-composition noise).
    sam2_predictor: a SAM2 video predictor shared by the chunks (default: built once when SAM2 refinement is on
    and available).
    """
    from monst3r.runtime import is_main_process

    timer = StageTimer() if timer is None else timer
    ws = int(cfg.aligner.window_size)
    n_prev0 = len(prev_video_results["poses"]) if prev_video_results is not None else 0
    chunks = stream_chunks(len(imgs), ws, int(ws * cfg.window_overlap_ratio), n_prev0)
    state = _FrameState(prev_video_results)
    cache = PairCache(model, device, cfg, flow_model) if reuse_pairs else None
    if not is_main_process():
        _follow_chunks(imgs, chunks, cfg, cache, model, device, predict)
        return None
    if sam2_predictor is None:
        sam2_predictor = _shared_sam2_predictor(cfg, device)
    parts: list = []
    phases: Dict[str, float] = {}  # optimizer phase times summed over the chunks
    for c, (s, e, n_frozen) in enumerate(chunks):
        log.info("streaming chunk %d/%d: frames [%d, %d), %d frozen", c + 1, len(chunks), s, e, n_frozen)
        rec = _run_chunk(imgs, (s, e, n_frozen), state, model, cfg, device, timer, flow_model, cache, predict,
                         sam2_predictor, phases)
        state.store(rec, s + n_frozen)
        keep_from = chunks[c + 1][0] if c + 1 < len(chunks) else e
        if cache is not None:
            cache.prune(keep_from)
        state.forget_before(keep_from)  # only the next chunk's frozen frames are needed again
        parts.append(rec)
        if device.type == "cuda":
            torch.cuda.empty_cache()
        if on_chunk is not None:
            on_chunk(c, (s, e, n_frozen))
    meta = dict(parts[-1].meta, source="streaming", chunks=[list(ch) for ch in chunks],
                final_losses=[p.meta.get("final_loss") for p in parts], timings=phases)
    if cache is not None:
        meta.update(pairs_computed=cache.computed_pairs, pairs_reused=cache.reused_pairs,
                    flows_computed=cache.computed_flows, flows_reused=cache.reused_flows)
    return Reconstruction.concatenate(parts, meta=meta)
