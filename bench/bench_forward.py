"""Network pair throughput and peak memory.

    python bench/bench_forward.py --config small --size 160 --batch 2 --device cpu
    python bench/bench_forward.py --config vitl --size 512 --batch 8 --device cuda --dtype bf16

Configs: ``small`` (the golden small_dpt model, random weights), ``tiny`` (golden tiny_linear), ``vitl`` (the
official ViT-Large configuration, random weights). ``--size``: 512 -> 512x288, 224 -> 224x224, 160 -> 160x80
(16:9 crops as load_images makes them). A batch of B pairs is symmetrised (B/2 mirror pairs, interleaved,
as the golden timing baseline was measured). Appends one JSON line to ``bench/results/forward.jsonl`` and prints
a table.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from monst3r.model import OFFICIAL_MODEL_STRING, model_from_string  # noqa: E402

CONFIGS = {
    "small": "AsymmetricCroCo3DStereo(pos_embed='RoPE100', patch_embed_cls='ManyAR_PatchEmbed', img_size=(512, 512), "
             "head_type='dpt', output_mode='pts3d', depth_mode=('exp', -inf, inf), conf_mode=('exp', 1, inf), "
             "enc_embed_dim=192, enc_depth=3, enc_num_heads=3, dec_embed_dim=128, dec_depth=10, dec_num_heads=4)",
    "tiny": "AsymmetricCroCo3DStereo(pos_embed='RoPE100', patch_embed_cls='ManyAR_PatchEmbed', img_size=(512, 512), "
            "head_type='linear', output_mode='pts3d', depth_mode=('exp', -inf, inf), conf_mode=('exp', 1, inf), "
            "enc_embed_dim=64, enc_depth=2, enc_num_heads=2, dec_embed_dim=64, dec_depth=2, dec_num_heads=2)",
    "vitl": OFFICIAL_MODEL_STRING,
}
SIZES = {512: (288, 512), 224: (224, 224), 160: (80, 160)}
DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def run(config: str, size: int, batch: int, device: str, dtype: str, iters: int, warmup: int) -> dict:
    dev = torch.device(device)
    model = model_from_string(CONFIGS[config], for_inference=True).to(dev).eval()
    H, W = SIZES[size]
    g = torch.Generator().manual_seed(0)
    imgs = (torch.rand(batch, 3, H, W, generator=g) * 2 - 1).to(dev)
    half = batch // 2 if batch > 1 else 1
    a, b = imgs[:half], imgs[half:half * 2] if batch > 1 else imgs[:1]
    img1 = torch.stack((a, b), 1).flatten(0, 1)[:batch]
    img2 = torch.stack((b, a), 1).flatten(0, 1)[:batch]
    inst1 = [x for k in range(half) for x in (f"a{k}", f"b{k}")][:batch]
    inst2 = [x for k in range(half) for x in (f"b{k}", f"a{k}")][:batch]
    v1 = dict(img=img1, true_shape=torch.tensor([[H, W]] * batch), instance=inst1)
    v2 = dict(img=img2, true_shape=torch.tensor([[H, W]] * batch), instance=inst2)
    amp = DTYPES[dtype]
    ctx = (lambda: torch.autocast(dev.type, dtype=amp)) if amp else (lambda: torch.autocast(dev.type, enabled=False))
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    times = []
    with torch.no_grad():
        for i in range(warmup + iters):
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            t = time.perf_counter()
            with ctx():
                model(v1, v2)
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            if i >= warmup:
                times.append(time.perf_counter() - t)
    peak = torch.cuda.max_memory_allocated(dev) / 2 ** 30 if dev.type == "cuda" else None
    if peak is None:
        import resource

        peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20
    times.sort()
    return dict(bench="forward", config=config, size=f"{W}x{H}", batch=batch, dtype=dtype, device=device_name(dev),
                min_s=times[0], median_s=times[len(times) // 2], pairs_per_s=batch / times[len(times) // 2],
                peak_gpu_gib=peak, peak_rss_gib=None if peak is not None else peak_rss,
                torch=torch.__version__, time=time.strftime("%Y-%m-%dT%H:%M:%S"))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", choices=sorted(CONFIGS), default="small")
    p.add_argument("--size", type=int, choices=sorted(SIZES), default=160)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "forward.jsonl"))
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("error: --device cuda but no CUDA GPU is visible; use --device cpu")
    r = run(a.config, a.size, a.batch, a.device, a.dtype, a.iters, a.warmup)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    with open(a.out, "a") as f:
        f.write(json.dumps(r) + "\n")
    mem = f"{r['peak_gpu_gib']:.2f} GiB GPU" if r["peak_gpu_gib"] is not None else f"{r['peak_rss_gib']:.2f} GiB RSS"
    print(f"| config | size | batch | dtype | median s | pairs/s | peak mem | device |\n|---|---|---|---|---|---|---|---|\n"
          f"| {r['config']} | {r['size']} | {r['batch']} | {r['dtype']} | {r['median_s']:.3f} | {r['pairs_per_s']:.2f} "
          f"| {mem} | {r['device']} |")
    return r


if __name__ == "__main__":
    main()
