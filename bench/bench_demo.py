"""End-to-end demo pipeline timing and peak memory: pair inference, optical flow, dynamic masks, optimization.

    python bench/bench_demo.py --device cuda --frames 65 --dtype bf16
    python bench/bench_demo.py --device cuda --frames 200 --streaming                      # long video, chunked
    python bench/bench_demo.py --device cuda --frames 1000 --unique_frames 100 --streaming --niter 100
    python bench/bench_demo.py --device cpu --config tiny --frames 6 --size 224 --niter 10     # smoke run
    python bench/bench_demo.py --device cpu --config tiny --size 224 --frames 48 --streaming --window_size 8 \
        --niter 30 --flow_loss_weight 0 --track_tensors       # CPU: time per chunk, peak tensor bytes

Network and flow weights are random (the official ones cannot be downloaded here; speed does not depend on them);
the input is the synthetic generator's video at 512x288 (``--size 512``). The demo's defaults otherwise
(swinstride-5 graph, 300 iterations, flow loss 0.01, temporal smoothing); any demo.py option can be added
(``--streaming``, ``--window_size``, ``--dtype bf16``, ...). ``--unique_frames K`` renders K synthetic frames and
plays them forwards and backwards up to ``--frames`` (rendering is ~0.15 s a frame; the timing does not depend
on the content). ``--track_tensors`` also records the peak bytes of live torch tensors
(``monst3r.utils.memtrack``; the CPU's equivalent of CUDA's max allocated, with some overhead per operator).
Appends a JSON line to ``bench/results/demo.jsonl``.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_forward import CONFIGS, device_name  # noqa: E402


def synthetic_views(n: int, size: int, seed: int = 0, unique: int | None = None):
    """``n`` view dicts of a synthetic video; with ``unique`` < n, ``unique`` rendered frames played forwards and
    backwards (0, 1, ..., u-1, u-2, ..., 0, 1, ...) so that consecutive frames stay consecutive."""
    import PIL.Image

    from monst3r.datasets.synthetic import SceneConfig, SyntheticScene
    from monst3r.utils.image import to_view, crop_img

    W, H = (512, 288) if size == 512 else (224, 224)
    u = min(n, unique or n)
    cache = ROOT / "bench" / ".cache" / f"synthetic_{W}x{H}_{u}_{seed}.npz"  # rendering is ~0.15 s a frame
    if cache.is_file():
        rgb = np.load(cache)["rgb"]
    else:
        scene = SyntheticScene(SceneConfig(width=W, height=H, num_frames=u, seed=seed))
        rgb = np.stack([scene.frame(i).rgb for i in range(u)])
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, rgb=rgb)
    rendered = [crop_img(PIL.Image.fromarray(f), size) for f in rgb]
    period = max(1, 2 * (u - 1))
    views = []
    for i in range(n):
        k = i % period if u > 1 else 0
        k = k if k < u else period - k
        views.append(to_view(rendered[k], i, f"synthetic_{i:05d}", None))
    return views


def main(argv=None):
    import demo
    from monst3r.model import model_from_string
    from monst3r.config import ReconstructConfig
    from monst3r.reconstruct import reconstruct
    from monst3r.utils.timing import StageTimer
    from monst3r.runtime import peak_memory_gib, resolve_device
    from third_party.raft import SEARAFT, SEARAFTConfig

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", choices=sorted(CONFIGS), default="vitl")
    p.add_argument("--frames", type=int, default=65)
    p.add_argument("--size", type=int, default=512, choices=[512, 224])
    p.add_argument("--device", default="auto")
    p.add_argument("--unique_frames", type=int, default=None)
    p.add_argument("--track_tensors", action="store_true")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "demo.jsonl"))
    a, rest = p.parse_known_args(argv)
    dargs = demo.get_parser().parse_args(["--input", "unused", "--no_sam2", "--silent"] + rest)
    dev = resolve_device(a.device)
    cfg = ReconstructConfig.from_demo_args(dargs)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    views = synthetic_views(a.frames, a.size, unique=a.unique_frames)
    t_gen = time.perf_counter() - t0
    model = model_from_string(CONFIGS[a.config], for_inference=True).to(dev).eval()
    flow = SEARAFT(SEARAFTConfig()).to(dev).eval() if dargs.flow_loss_weight > 0 else None
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)
    timer = StageTimer()
    phases: dict = {}  # optimizer phase times (reconstruct's phase_times)
    chunk_s: list = []

    def on_chunk(c, bounds):
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        chunk_s.append(time.perf_counter() - t0 - sum(chunk_s))
        # progress line (kept in the log even when a long run is cut off by a timeout)
        print(json.dumps(dict(chunk=c, bounds=list(bounds), s=round(chunk_s[-1], 3),
                              peak_gpu_gib=peak_memory_gib(dev) if dev.type == "cuda" else None)), flush=True)

    from monst3r.utils.memtrack import TensorMemoryTracker
    tracker = TensorMemoryTracker() if a.track_tensors else contextlib.nullcontext()
    t0 = time.perf_counter()
    with tracker:
        if dargs.streaming:
            from monst3r.streaming import reconstruct_streaming
            res = reconstruct_streaming(views, model, cfg, device=dev, timer=timer, flow_model=flow,
                                        on_chunk=on_chunk)
        else:
            res = reconstruct(views, model, cfg, device=dev, timer=timer, flow_model=flow, phase_times=phases)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    total = time.perf_counter() - t0
    row = dict(bench="demo", config=a.config, frames=a.frames, size=f"{views[0]['img'].shape[-1]}x{views[0]['img'].shape[-2]}",
               dtype=dargs.dtype, niter=dargs.niter,
               batchify=not (dargs.not_batchify or dargs.window_wise or dargs.streaming),
               window_wise=dargs.window_wise, streaming=dargs.streaming,
               window_size=dargs.window_size if (dargs.window_wise or dargs.streaming) else None,
               flow_loss_weight=dargs.flow_loss_weight, unique_frames=a.unique_frames, total_s=total, s_per_frame=total / a.frames, **{f"{k}_s": v for k, v in timer.times.items()},
               peak_gpu_gib=peak_memory_gib(dev) if dev.type == "cuda" else None,
               peak_rss_gib=peak_memory_gib(torch.device("cpu")), device=device_name(dev),
               peak_tensor_gib=tracker.peak_bytes / 2 ** 30 if a.track_tensors else None,
               chunk_s=[round(x, 3) for x in chunk_s] or None,
               optimizer_phases_s=res.meta.get("timings") if dargs.streaming else phases,
               pairs_computed=res.meta.get("pairs_computed"), pairs_reused=res.meta.get("pairs_reused"),
               finite=bool(np.isfinite(res.poses).all()), input_generation_s=t_gen, torch=torch.__version__,
               time=time.strftime("%Y-%m-%dT%H:%M:%S"))
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    with open(a.out, "a") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps(row, indent=1))
    return row


if __name__ == "__main__":
    main()
