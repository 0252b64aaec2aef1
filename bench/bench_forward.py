"""Network pair throughput and peak memory.

    python bench/bench_forward.py --config small --size 160 --batch 2 --device cpu
    python bench/bench_forward.py --config vitl --size 512 --batch 8 --device cuda --dtype bf16

Configs: ``small`` (the golden small_dpt model, random weights), ``tiny`` (golden tiny_linear), ``vitl`` (the
official ViT-Large configuration, random weights). ``--size``: 512 -> 512x288, 224 -> 224x224, 160 -> 160x80
(16:9 crops as load_images makes them). A batch of B pairs is symmetrised (B/2 mirror pairs, interleaved,
as the golden timing baseline was measured). Appends one JSON line to ``bench/results/forward.jsonl`` and prints
a table. On CPU the line also holds the process CPU time per forward (``cpu_min_s``/``cpu_median_s``: with one
thread it is far less sensitive to other processes on a shared machine than wall time) and the load average
before and after.

Op-level profile (torch.profiler, ``record_shapes=True``), printed as a markdown table of the top ops by self CPU
time after the timing runs::

    python bench/bench_forward.py --config small --size 160 --batch 4 --threads 1 --iters 3 --profile 3
    python bench/bench_forward.py ... --profile 3 --profile-rounds 3 --profile-shapes

``--profile N`` profiles N forwards; ``--profile-rounds R`` repeats that R times and keeps, per op, the round with
the least self CPU time (contention from other processes only ever adds time); ``--profile-shapes`` groups the
rows by input shapes.
"""
from __future__ import annotations

import argparse
import json
import os
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


def make_inputs(config: str, size: int, batch: int, device: str):
    """(model in eval mode, view1, view2): the symmetrised batch of ``batch`` items at ``size``."""
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
    return model, v1, v2


def _autocast(dev: torch.device, dtype: str):
    amp = DTYPES[dtype]
    return torch.autocast(dev.type, dtype=amp) if amp else torch.autocast(dev.type, enabled=False)


def run(config: str, size: int, batch: int, device: str, dtype: str, iters: int, warmup: int) -> dict:
    dev = torch.device(device)
    model, v1, v2 = make_inputs(config, size, batch, device)
    H, W = SIZES[size]
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    times, cpu_times = [], []
    load_before = os.getloadavg()
    with torch.no_grad():
        for i in range(warmup + iters):
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            t, c = time.perf_counter(), time.process_time()
            with _autocast(dev, dtype):
                model(v1, v2)
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            if i >= warmup:
                times.append(time.perf_counter() - t)
                cpu_times.append(time.process_time() - c)
    peak = torch.cuda.max_memory_allocated(dev) / 2 ** 30 if dev.type == "cuda" else None
    if peak is None:
        import resource

        peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20
    times.sort()
    cpu_times.sort()
    r = dict(bench="forward", config=config, size=f"{W}x{H}", batch=batch, dtype=dtype, device=device_name(dev),
             min_s=times[0], median_s=times[len(times) // 2], pairs_per_s=batch / times[len(times) // 2],
             peak_gpu_gib=peak, peak_rss_gib=None if peak is not None else peak_rss,
             torch=torch.__version__, time=time.strftime("%Y-%m-%dT%H:%M:%S"))
    if dev.type == "cpu":
        r.update(threads=torch.get_num_threads(), cpu_min_s=cpu_times[0], cpu_median_s=cpu_times[len(cpu_times) // 2],
                 loadavg_before=[round(x, 2) for x in load_before],
                 loadavg_after=[round(x, 2) for x in os.getloadavg()])
    return r


def profile_forward(config: str, size: int, batch: int, device: str, dtype: str, n: int, rounds: int = 1,
                    shapes: bool = False, rows: int = 15) -> str:
    """Markdown table of the top ``rows`` ops by self CPU time over ``n`` profiled forwards (after 2 warm-up
    forwards); with ``rounds > 1`` each op keeps its least-self-time round."""
    from torch.profiler import ProfilerActivity, profile

    dev = torch.device(device)
    model, v1, v2 = make_inputs(config, size, batch, device)
    best = {}
    load_before = os.getloadavg()
    with torch.no_grad():
        for _ in range(2):
            with _autocast(dev, dtype):
                model(v1, v2)
        for _ in range(rounds):
            with profile(activities=[ProfilerActivity.CPU], record_shapes=shapes) as prof:
                for _ in range(n):
                    with _autocast(dev, dtype):
                        model(v1, v2)
            for e in prof.key_averages(group_by_input_shape=shapes):
                key = (e.key, str(e.input_shapes) if shapes else "")
                cur = (e.self_cpu_time_total, e.cpu_time_total, e.count)
                if key not in best or cur[0] < best[key][0]:
                    best[key] = cur
    total = sum(v[0] for v in best.values())
    top = sorted(best.items(), key=lambda kv: -kv[1][0])[:rows]
    lines = [f"profile: {config} {SIZES[size][1]}x{SIZES[size][0]} batch {batch} {dtype}, {n} forwards, "
             f"{torch.get_num_threads()} thread(s), {rounds} round(s) (min per op), load average "
             f"{' '.join(f'{x:.2f}' for x in load_before)} -> {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
             "", "| op | " + ("input shapes | " if shapes else "") + "calls | self CPU ms | % | CPU total ms |",
             "|---|" + ("---|" if shapes else "") + "---|---|---|---|"]
    for (name, shp), (self_us, tot_us, count) in top:
        lines.append(f"| {name} | " + (f"{shp} | " if shapes else "") +
                     f"{count} | {self_us / 1e3:.1f} | {100 * self_us / total:.1f} | {tot_us / 1e3:.1f} |")
    lines.append(f"\nself CPU total (sum of per-op minima): {total / 1e3:.1f} ms")
    return "\n".join(lines)


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
    p.add_argument("--profile", type=int, default=0, metavar="N",
                   help="after the timing, profile N forwards and print the top ops by self CPU time")
    p.add_argument("--profile-rounds", type=int, default=1, metavar="R",
                   help="repeat the profile R times and keep each op's minimum (default 1)")
    p.add_argument("--profile-shapes", action="store_true", help="group the profile rows by input shapes")
    p.add_argument("--profile-rows", type=int, default=15)
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
    if "cpu_min_s" in r:
        print(f"wall min {r['min_s']:.3f} s; CPU time per forward min {r['cpu_min_s']:.3f} s, median "
              f"{r['cpu_median_s']:.3f} s; load average {r['loadavg_before']} -> {r['loadavg_after']}")
    if a.profile:
        print()
        print(profile_forward(a.config, a.size, a.batch, a.device, a.dtype, a.profile, a.profile_rounds,
                              a.profile_shapes, a.profile_rows))
    return r


if __name__ == "__main__":
    main()
