"""Global optimizer speed and memory: seconds per iteration and peak memory per mode and size.

    python bench/bench_optimizer.py --device cpu --threads 1                 # golden case + small, vs the original
    python bench/bench_optimizer.py --device cuda --sizes golden,small,medium,demo
    python bench/bench_optimizer.py --device cpu --sizes small --modes batched,nonbatched --iters 20

Sizes (N frames, H x W, scene graph = sliding window with strides (1, 3, 5, 7, 9), symmetrized):
  golden  the golden scene of shared/golden/optimizer (8 frames 64x48, 32 pairs), full 300-iteration runs with the
          settings of the original's golden runs a (no flow), b (demo), d (non-batched), e (window-wise); compared
          with the original's seconds per iteration recorded in its summary.json (same case, same thread count);
  small   16 frames 128x72;  medium  32 frames 256x144;  demo  65 frames 512x288 (the README's 65-frame video);
  f200    200 frames 512x288 (GPU: about 9 GB of pair predictions; long videos beyond that: the streaming mode,
          bench/bench_demo.py --streaming).
Synthetic sizes use analytic scenes (random smooth depth, moving camera, exact flow); the flow term is active in
every timed iteration (start epoch 0, no gating), SAM2 off. Modes: batched, nonbatched (chunked gradient
accumulation), window (window of N/2 frames, overlap 0.5).

Each (size, mode) runs in a fresh subprocess. The input is built on the CPU (as ``inference()`` returns it) and the
scene on ``--device``. Phases, each with its time and peak memory (CUDA: max allocated; CPU: the process peak RSS,
reset per phase through /proc/self/clear_refs): ``build`` (scene construction, incl. the self motion masks),
``init`` (MST), ``warmup`` / ``iters`` (the timed iterations), ``clean`` (clean_pointcloud) and ``result``.
Summary fields: ``peak_mem_gib`` = the whole run's peak (CPU: process max RSS, input included), ``loop_peak_gib``
= the peak of the iterations, ``opt_peak_gib`` = the scene's working set in the loop (CPU: loop peak minus the bare
process, the input being freed after the build; CUDA: the loop peak, the input being on the CPU),
``build_over_input_gib`` = the build peak beyond the input.
The self motion masks (RANSAC PnPs, slow on the CPU) are computed by the first mode of a size and handed to the
next modes as user masks (``--self_masks_every_mode`` to recompute them). ``s_per_iter`` is wall time,
``cpu_s_per_iter`` the process CPU time (robust on a shared machine with one thread). Appends one JSON line to
``bench/results/optimizer.jsonl`` and prints a table.

    python bench/bench_optimizer.py --device cpu --sizes demo --iters 3 --warmup 1   # demo size on the CPU
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SIZES = {"small": (16, 72, 128), "medium": (32, 144, 256), "demo": (65, 288, 512), "f200": (200, 288, 512)}
STRIDES = (1, 3, 5, 7, 9)
GOLDEN_RUNS = {  # our mode name -> (original golden run, settings)
    "noflow": ("a_noflow_nosmooth", dict(flow_loss_weight=0, temporal_smoothing_weight=0)),
    "batched": ("b_demo_selfmask", dict()),
    "nonbatched": ("d_demo_selfmask_nonbatch", dict(batchify=False)),
    "window": ("e_window_wise", dict(batchify=False, window_wise=True, window_size=6, window_overlap_ratio=0.5)),
}
DEMO = dict(shared_focal=True, temporal_smoothing_weight=0.01, translation_weight=1.0, flow_loss_weight=0.01,
            flow_loss_start_epoch=0.1, flow_loss_thre=25, pxl_thre=50, use_self_mask=True, motion_mask_thre=0.35,
            num_total_iter=300, sam2_mask_refine=False, verbose=False)


def device_name(device) -> str:
    import torch
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


# ------------------------------------------------------------------------------------------------------------
# inputs
# ------------------------------------------------------------------------------------------------------------
def synthetic_output(N: int, H: int, W: int, device="cpu", seed: int = 0):
    """inference()-style dict and exact flows of an analytic scene (per-frame smooth depth, moving camera).

    Predictions and flows are computed on ``device``; the views' images (one CPU tensor per frame, referenced by
    every pair through lists) and masks (expanded CPU views) cost almost nothing. The benchmark moves everything to
    the CPU before building the scene, as ``inference()`` returns CPU tensors.
    """
    import torch
    g = torch.Generator(device="cpu").manual_seed(seed)
    f = 0.8 * W
    K = torch.tensor([[f, 0, W / 2], [0, f, H / 2], [0, 0, 1]], device=device)
    Kinv = torch.linalg.inv(K)
    t = torch.linspace(0, 1, N)
    c2w = torch.eye(4).repeat(N, 1, 1)
    ang = 0.3 * t
    c2w[:, 0, 0], c2w[:, 0, 2], c2w[:, 2, 0], c2w[:, 2, 2] = ang.cos(), ang.sin(), -ang.sin(), ang.cos()
    c2w[:, 0, 3], c2w[:, 2, 3] = 1.5 * t, 0.3 * t
    c2w = c2w.to(device)
    v, u = torch.meshgrid(torch.arange(H, device=device, dtype=torch.float32),
                          torch.arange(W, device=device, dtype=torch.float32), indexing="ij")
    P = torch.stack((u, v, torch.ones_like(u)), -1).reshape(-1, 3)
    rays = P @ Kinv.T  # [HW, 3]
    a = torch.rand(N, 4, generator=g).to(device)
    depth = 2 + 0.5 * torch.sin(u[None] / W * 3.1 + a[:, :1, None]) * torch.cos(v[None] / H * 2.3 + a[:, 1:2, None])
    cam = depth.reshape(N, -1, 1) * rays  # [N, HW, 3] own-camera points
    pairs = [(i, i + k) for i in range(N) for k in STRIDES if i + k < N]
    pairs = pairs + [(j, i) for i, j in pairs]
    E = len(pairs)
    ei = torch.tensor([p[0] for p in pairs], device=device)
    ej = torch.tensor([p[1] for p in pairs], device=device)
    rel = torch.linalg.inv(c2w[ei]) @ c2w[ej]  # cam j -> cam i
    pts1 = cam[ei].reshape(E, H, W, 3)
    pts2 = (cam[ej] @ rel[:, :3, :3].transpose(1, 2) + rel[:, None, :3, 3]).reshape(E, H, W, 3)
    noise = lambda: 1 + 0.005 * torch.randn(E, H, W, 1, generator=g).to(device)  # noqa: E731
    conf = lambda: 1 + torch.exp(torch.randn(E, H, W, generator=g).to(device) * 0.25 + 1.8)  # noqa: E731

    def flow(src, tgt):  # exact rigid flow from frame src to tgt
        r = torch.linalg.inv(c2w[tgt]) @ c2w[src]
        q = (cam[src] @ r[:, :3, :3].transpose(1, 2) + r[:, None, :3, 3]) @ K.T
        return (q[..., :2] / q[..., 2:3] - P[:, :2]).reshape(-1, H, W, 2).permute(0, 3, 1, 2).contiguous()

    frames = torch.rand(N, 3, H, W, generator=g) * 2 - 1

    def view(idx):
        return dict(img=[frames[i] for i in idx.tolist()], idx=idx.tolist(),
                    instance=[str(i) for i in idx.tolist()], true_shape=torch.tensor([[H, W]] * E),
                    mask=torch.ones(1, H, W, dtype=torch.bool).expand(E, H, W),
                    dynamic_mask=torch.zeros(1, H, W, dtype=torch.bool).expand(E, H, W))
    out = dict(view1=view(ei), view2=view(ej), pred1=dict(pts3d=pts1 * noise(), conf=conf()),
               pred2=dict(pts3d_in_other_view=pts2 * noise(), conf=conf()))
    return out, (flow(ei, ej), flow(ej, ei)), E


def golden_output(device):
    import numpy as np
    import torch
    folder = Path(os.environ.get("MONST3R_GOLDEN", ROOT.parent / "shared" / "golden")) / "optimizer"
    if not (folder / "inputs.npz").is_file():
        return None
    I = dict(np.load(folder / "inputs.npz"))
    e = I["edges"]
    E = len(e)

    def view(col):
        idx = e[:, col]
        return dict(img=torch.tensor(I["imgs"][idx] * 2 - 1).permute(0, 3, 1, 2), idx=idx.tolist(),
                    instance=[str(i) for i in idx], true_shape=torch.tensor([[48, 64]] * E),
                    mask=torch.ones(E, 48, 64, dtype=torch.bool), dynamic_mask=torch.zeros(E, 48, 64, dtype=torch.bool))
    out = dict(view1=view(0), view2=view(1),
               pred1=dict(pts3d=torch.tensor(I["pts3d_view1"]), conf=torch.tensor(I["conf_view1"])),
               pred2=dict(pts3d_in_other_view=torch.tensor(I["pts3d_view2_in_view1"]),
                          conf=torch.tensor(I["conf_view2"])))
    fij = torch.tensor(I["flow_ij"])
    summary = json.loads((folder / "summary.json").read_text())
    return out, (fij, fij[(torch.arange(E) + E // 2) % E]), summary


# ------------------------------------------------------------------------------------------------------------
# one measurement (in a subprocess)
# ------------------------------------------------------------------------------------------------------------
class _Peak:
    """Peak memory of a phase: CUDA max allocated, or on the CPU the process high-water mark (VmHWM, reset through
    /proc/self/clear_refs on Linux; otherwise the lifetime maximum RSS)."""

    def __init__(self, dev):
        self.dev = dev

    @staticmethod
    def _status(key: str) -> float | None:
        try:
            for line in open("/proc/self/status"):
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 2 ** 20
        except OSError:
            return None
        return None

    def rss(self) -> float:
        v = self._status("VmRSS")
        return v if v is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20

    def reset(self) -> None:
        import gc
        import torch
        gc.collect()
        if self.dev.type == "cuda":
            torch.cuda.synchronize(self.dev)
            torch.cuda.reset_peak_memory_stats(self.dev)
            return
        try:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")
        except OSError:
            pass

    def peak(self) -> float:
        import torch
        if self.dev.type == "cuda":
            torch.cuda.synchronize(self.dev)
            return torch.cuda.max_memory_allocated(self.dev) / 2 ** 30
        v = self._status("VmHWM")
        return v if v is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20

    @property
    def kind(self) -> str:
        return "cuda max allocated" if self.dev.type == "cuda" else "process max RSS"


def worker(size: str, mode: str, device: str, threads: int, iters: int, warmup: int, post: bool = True,
           masks_file: str | None = None) -> dict:
    import torch
    torch.set_num_threads(threads)
    from monst3r.cloud_opt import global_aligner
    dev = torch.device(device)
    mem = _Peak(dev)
    rec = dict(size=size, mode=mode, device=device_name(dev), threads=threads, rss_before_gib=mem.rss(),
               peak_mem_kind=mem.kind)
    phases: dict[str, dict] = {}

    def phase(name, fn):
        mem.reset()
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        _sync(dev)
        phases[name] = dict(s=time.perf_counter() - t0, cpu_s=time.process_time() - c0, peak_gib=mem.peak())
        return out
    if size == "golden":
        g = golden_output(dev)
        if g is None:
            return dict(rec, skipped="golden data not found")
        out, flows, summary = g
        orig_run, kw = GOLDEN_RUNS[mode]
        kw = dict(DEMO, **kw)
        t0 = time.perf_counter()
        net = global_aligner(out, device=dev, flows=flows if kw["flow_loss_weight"] > 0 else None, **kw)
        net.initialize("mst")
        build = time.perf_counter() - t0
        t0, c0 = time.perf_counter(), time.process_time()
        net.compute_global_alignment(init=None, niter=300, schedule="linear", lr=0.01)
        _sync(dev)
        loop, cpu = time.perf_counter() - t0, time.process_time() - c0
        n = len(net.history["loss"])
        ref = summary["runs"][orig_run]
        rec.update(frames=8, height=48, width=64, pairs=32, build_s=build, s_per_iter=loop / n, iterations=n,
                   cpu_s_per_iter=cpu / n,
                   original_run=orig_run, original_s_per_iter=ref["seconds_per_iteration"],
                   original_threads=summary.get("threads"), speedup=ref["seconds_per_iteration"] / (loop / n))
        rec["peak_mem_gib"] = mem.peak()
        return rec
    N, H, W = SIZES[size]
    t0 = time.perf_counter()
    torch.set_num_threads(os.cpu_count() or threads)  # the input is not measured: build it fast
    out, flows, E = synthetic_output(N, H, W, dev if dev.type == "cuda" else "cpu")
    for p in ("pred1", "pred2"):
        out[p] = {k: v.cpu() for k, v in out[p].items()}
    flows = tuple(f.cpu() for f in flows)
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    torch.set_num_threads(threads)
    rec["input_s"] = time.perf_counter() - t0
    rec["input_gib"] = mem.rss() - rec["rss_before_gib"]  # host memory of the inference()-style input
    kw = dict(DEMO, flow_loss_start_epoch=0.0, flow_loss_thre=0)  # flow term in every timed iteration
    if mode == "nonbatched":
        kw.update(batchify=False)
    elif mode == "window":
        kw.update(window_wise=True, window_size=max(2, N // 2), window_overlap_ratio=0.5)
    elif mode != "batched":
        raise ValueError(f"unknown mode {mode}")
    import numpy as np
    if masks_file and os.path.isfile(masks_file):  # self masks of an earlier mode: skip their (PnP) cost
        kw.update(dynamic_masks=torch.from_numpy(np.load(masks_file)), use_self_mask=False)
        rec["masks"] = "given (computed by an earlier mode)"
    else:
        rec["masks"] = "self"
    net = phase("build", lambda: global_aligner(out, device=dev, flows=flows, **kw))
    del out, flows  # the scene keeps what it needs (its own copies on its device, or the CPU flows it adopted)
    if masks_file and rec["masks"] == "self":
        np.save(masks_file, torch.stack(net.dynamic_masks).cpu().numpy())
    phase("init", lambda: net.initialize("mst"))
    n_total = warmup + iters
    if mode == "window":
        phase("iters", lambda: net.compute_window_wise_alignment(init=None, niter=300, schedule="linear", lr=0.01,
                                                                 max_iters=n_total))
        n = len(net.history["loss"])
    else:
        phase("warmup", lambda: net.compute_global_alignment(init=None, niter=300, schedule="linear", lr=0.01,
                                                             max_iters=warmup))
        phase("iters", lambda: net.compute_global_alignment(init=None, niter=300, schedule="linear", lr=0.01,
                                                            max_iters=iters))
        n = iters
    per, cpu = phases["iters"]["s"] / n, phases["iters"]["cpu_s"] / n
    if post:
        phase("clean", lambda: net.clean_pointcloud())
        phase("result", lambda: net.result())
    rec.update(frames=N, height=H, width=W, pairs=E, build_s=phases["build"]["s"], s_per_iter=per,
               cpu_s_per_iter=cpu, final_loss=float(net.history["loss"][-1]))
    rec["phases"] = phases
    rec["peak_mem_gib"] = max(p["peak_gib"] for p in phases.values())  # whole run (CPU: incl. the input)
    rec["loop_peak_gib"] = max(p["peak_gib"] for k, p in phases.items() if k in ("warmup", "iters"))
    # the scene's own working set: on the CPU the input has been freed when the loop runs, so the loop's process
    # peak minus the bare process; the build peak beyond the input (CUDA: the input is on the CPU)
    if dev.type != "cuda":
        base = rec["rss_before_gib"]
        rec["opt_peak_gib"] = rec["loop_peak_gib"] - base
        rec["build_over_input_gib"] = phases["build"]["peak_gib"] - base - rec["input_gib"]
    else:
        rec["opt_peak_gib"] = rec["loop_peak_gib"]
        rec["build_over_input_gib"] = phases["build"]["peak_gib"]
    return rec


def _sync(dev) -> None:
    import torch
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


# ------------------------------------------------------------------------------------------------------------
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--sizes", default=None, help="comma list of golden, small, medium, demo, f200 "
                                                  "(default: golden,small on cpu; golden,small,medium,demo on cuda)")
    ap.add_argument("--modes", default="batched,nonbatched,window",
                    help="comma list of batched, nonbatched, window (+ noflow for the golden size)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=600, help="seconds per measurement")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "optimizer.jsonl"))
    ap.add_argument("--no_post", action="store_true", help="skip the clean_pointcloud() / result() phases")
    ap.add_argument("--self_masks_every_mode", action="store_true",
                    help="compute the self motion masks in every mode (default: the first mode of a size computes "
                         "them, the next ones get them as user masks, which skips their RANSAC PnPs)")
    ap.add_argument("--_worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--_masks", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._worker:
        size, mode = args._worker.split(":")
        print("RESULT " + json.dumps(worker(size, mode, args.device, args.threads, args.iters, args.warmup,
                                            post=not args.no_post, masks_file=args._masks)))
        return 0
    import tempfile
    tmp = tempfile.TemporaryDirectory(prefix="bench_optimizer_")
    cuda = args.device.startswith("cuda")
    sizes = (args.sizes or ("golden,small,medium,demo" if cuda else "golden,small")).split(",")
    modes = args.modes.split(",")
    records = []
    for size in sizes:
        size_modes = list(modes) + (["noflow"] if size == "golden" and "noflow" not in modes else [])
        for mode in size_modes:
            if mode == "noflow" and size != "golden":
                continue
            cmd = [sys.executable, __file__, "--device", args.device, "--threads", str(args.threads),
                   "--iters", str(args.iters), "--warmup", str(args.warmup), "--_worker", f"{size}:{mode}"]
            if args.no_post:
                cmd.append("--no_post")
            if not args.self_masks_every_mode and size != "golden":
                cmd += ["--_masks", os.path.join(tmp.name, f"masks_{size}.npy")]
            env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
            try:
                res = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, env=env)
                line = [l for l in res.stdout.splitlines() if l.startswith("RESULT ")]
                rec = json.loads(line[-1][7:]) if line else dict(size=size, mode=mode,
                                                                 error=res.stderr.strip().splitlines()[-1:])
            except subprocess.TimeoutExpired:
                rec = dict(size=size, mode=mode, error=f"timeout after {args.timeout} s")
            records.append(rec)
            print(_row(rec), flush=True)
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    import torch
    entry = dict(time=time.strftime("%Y-%m-%dT%H:%M:%S"), device=args.device, torch=torch.__version__,
                 threads=args.threads, loadavg=load, host=platform.node(), records=records)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("a") as fh:
        fh.write(json.dumps(entry) + "\n")
    print(f"\nappended to {out} (load average {load})")
    return 0


def _row(r: dict) -> str:
    if "error" in r or "skipped" in r:
        return f"{r['size']:>7} {r['mode']:>10}  {r.get('error') or r.get('skipped')}"
    s = (f"{r['size']:>7} {r['mode']:>10}  N={r['frames']:>3} {r['width']}x{r['height']} E={r['pairs']:>4}  "
         f"build {r['build_s']:7.2f} s  {1000 * r['s_per_iter']:8.2f} ms/it (cpu {1000 * r['cpu_s_per_iter']:7.2f})")
    if "opt_peak_gib" in r:
        s += (f"  scene: loop {r['opt_peak_gib']:5.2f} GiB, build {r['build_over_input_gib']:5.2f} GiB (input"
              f" {r['input_gib']:.2f}, whole run {r['peak_mem_gib']:.2f})")
        ph = r.get("phases", {})
        if "clean" in ph:
            s += f"  clean {ph['clean']['s']:.2f} s ({ph['clean']['peak_gib']:.2f}) result {ph['result']['s']:.2f} s"
        s += f"  masks: {r.get('masks', '?')}"
    else:
        s += f"  peak {r['peak_mem_gib']:6.2f} GiB"
    s += f"  [{r['device']}]"
    if "original_s_per_iter" in r:
        s += f"  original {1000 * r['original_s_per_iter']:.2f} ms/it -> x{r['speedup']:.2f}"
    return s


if __name__ == "__main__":
    raise SystemExit(main())
