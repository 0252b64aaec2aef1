"""End-to-end pair inference (``inference()``) over a video-sized pair graph.

    python bench/bench_inference.py --config vitl --frames 65 --size 512 --device cuda --dtype bf16 --batch 16

Random images (the speed does not depend on the content) at 512x288, scene graph ``swinstride-5-noncyclic``
symmetrised (600 pairs for 65 frames, the demo default). Reports seconds, pairs/s and peak GPU memory, with and
without the encoder cache; ``--compare`` also runs fp32 and reports the bf16-vs-fp32 error of the point maps
(max over pixels of ``|a-b| / |b|``, and its median) and of the confidences. Appends JSON lines to
``bench/results/inference.jsonl``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_forward import CONFIGS, DTYPES, SIZES, device_name  # noqa: E402
from monst3r.image_pairs import make_pairs  # noqa: E402
from monst3r.inference import inference  # noqa: E402
from monst3r.model import model_from_string  # noqa: E402


def fake_views(n: int, H: int, W: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(1, 3, H // 8, W // 8, generator=g)
    views = []
    for i in range(n):
        img = torch.nn.functional.interpolate(base + 0.05 * i, size=(H, W), mode="bilinear") * 2 - 1
        img = (img + 0.1 * torch.randn(1, 3, H, W, generator=g)).clamp(-1, 1)
        views.append(dict(img=img, true_shape=np.int32([[H, W]]), idx=i, instance=str(i),
                          mask=torch.ones(1, H, W, dtype=torch.bool), dynamic_mask=torch.zeros(1, H, W, dtype=torch.bool)))
    return views


def timed(pairs, model, dev, batch, dtype, cache):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)
    t = time.perf_counter()
    out = inference(pairs, model, dev, batch_size=batch, verbose=False, dtype=DTYPES[dtype], encoder_cache=cache)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    dt = time.perf_counter() - t
    peak = torch.cuda.max_memory_allocated(dev) / 2 ** 30 if dev.type == "cuda" else None
    return out, dt, peak


def rel_err(a: torch.Tensor, b: torch.Tensor):
    e = (a.double() - b.double()).norm(dim=-1) / b.double().norm(dim=-1).clamp(min=1e-12)
    return float(e.max()), float(e.median())


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", choices=sorted(CONFIGS), default="small")
    p.add_argument("--frames", type=int, default=10)
    p.add_argument("--size", type=int, choices=sorted(SIZES), default=160)
    p.add_argument("--scene_graph", default="swinstride-5-noncyclic")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")
    p.add_argument("--no_cache_baseline", action="store_true", help="also time the original per-pair encoding")
    p.add_argument("--compare", action="store_true", help="also run fp32 and report the error of --dtype")
    p.add_argument("--runs", default=None,
                   help="explicit runs, e.g. fp32:nocache,fp32:cache,bf16:cache (overrides the flags above); "
                        "the first bf16/fp16 run is compared with the first fp32 run")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "inference.jsonl"))
    a = p.parse_args(argv)
    if a.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("error: --device cuda but no CUDA GPU is visible; use --device cpu")
    dev = torch.device(a.device)
    torch.manual_seed(0)
    model = model_from_string(CONFIGS[a.config], for_inference=True).to(dev).eval()
    H, W = SIZES[a.size]
    pairs = make_pairs(fake_views(a.frames, H, W), a.scene_graph, symmetrize=True)
    timed(pairs[: min(len(pairs), a.batch)], model, dev, a.batch, a.dtype, True)  # warm-up
    rows = []
    runs = [(a.dtype, True)] + ([(a.dtype, False)] if a.no_cache_baseline else [])
    if a.compare and a.dtype != "fp32":
        runs.append(("fp32", True))
    if a.runs:
        runs = [(r.split(":")[0], r.split(":")[1] == "cache") for r in a.runs.split(",")]
    outs = {}
    for dtype, cache in runs:
        out, dt, peak = timed(pairs, model, dev, a.batch, dtype, cache)
        outs[(dtype, cache)] = out
        rows.append(dict(bench="inference", config=a.config, frames=a.frames, pairs=len(pairs), size=f"{W}x{H}",
                         batch=a.batch, dtype=dtype, encoder_cache=cache, seconds=dt, pairs_per_s=len(pairs) / dt,
                         peak_gpu_gib=peak, device=device_name(dev), torch=torch.__version__,
                         time=time.strftime("%Y-%m-%dT%H:%M:%S")))
    low = next((r for r in runs if r[0] != "fp32"), None)
    ref = next((r for r in runs if r[0] == "fp32"), None)
    if low is not None and ref is not None:
        lo, hi = outs[low], outs[ref]
        pm, pmed = rel_err(lo["pred1"]["pts3d"], hi["pred1"]["pts3d"])
        qm, qmed = rel_err(lo["pred2"]["pts3d_in_other_view"], hi["pred2"]["pts3d_in_other_view"])
        c = ((lo["pred1"]["conf"].double() - hi["pred1"]["conf"].double()).abs() / hi["pred1"]["conf"].double())
        rows[runs.index(low)].update(vs_fp32_pts1_max_rel=pm, vs_fp32_pts1_median_rel=pmed, vs_fp32_pts2_max_rel=qm,
                       vs_fp32_pts2_median_rel=qmed, vs_fp32_conf_max_rel=float(c.max()),
                       vs_fp32_conf_median_rel=float(c.median()))
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    with open(a.out, "a") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    print("| config | frames | pairs | size | dtype | cache | s | pairs/s | peak GPU GiB | device |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        peak = f"{r['peak_gpu_gib']:.2f}" if r["peak_gpu_gib"] is not None else "-"
        print(f"| {r['config']} | {r['frames']} | {r['pairs']} | {r['size']} | {r['dtype']} | {r['encoder_cache']} "
              f"| {r['seconds']:.2f} | {r['pairs_per_s']:.1f} | {peak} | {r['device']} |")
    for r in rows:
        if "vs_fp32_pts1_max_rel" in r:
            print({k: v for k, v in r.items() if k.startswith("vs_fp32")})
    return rows


if __name__ == "__main__":
    main()
