"""Process memory (RSS) of the global optimizer against the number of iterations (CPU).

    OMP_NUM_THREADS=1 python bench/bench_rss.py --frames 8 --size 224 --niter 30
    OMP_NUM_THREADS=1 python bench/bench_rss.py --frames 8 --size 224 --niter 1000 --mode nonbatched
    OMP_NUM_THREADS=1 python bench/bench_rss.py --niter 300 --mode window --every 50

Input: a synthetic scene (``monst3r.datasets.synthetic``) with ideal pairwise predictions (1 % depth noise, random
pair scales) on the demo's symmetrized sliding-window graph (odd offsets 1, 3, 5, 7, 9), its exact optical flows
passed as ``flows=`` (flow loss ON from 10 % of the iterations, gated at 25 as the demo), the demo's temporal
smoothing, the ground-truth dynamic masks of the views (no self masks / SAM2, to keep the build cheap). The input
is cached under ``--cache`` (rendering 224x224 frames takes a while).

Modes: batched (default), nonbatched (``batchify=False``), window (window-wise, ``--window`` frames, overlap 0.5).
Prints the process RSS (VmRSS of /proc/self/status) every ``--every`` iterations, then a JSON summary line:
``peak_rss_mib`` (getrusage ru_maxrss: the peak of the whole process), ``rss_before_loop_mib``, ``rss_end_mib``,
``loop_growth_mib`` (process peak minus RSS before the loop), ``loop_peak_rss_mib`` (peak RSS of the loop alone: VmHWM
reset when the loop starts, Linux) and ``ms_per_iter`` (loop wall time / loss evaluations).
Run each configuration in a fresh process (ru_maxrss is a process-wide peak).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def proc_status_mib(field: str) -> float:
    """A memory field of /proc/self/status (``VmRSS``, ``VmHWM``, ...) in MiB (0 where unavailable)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def rss_mib() -> float:
    """Current resident set size (MiB)."""
    return proc_status_mib("VmRSS")


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def hwm_mib() -> float:
    """Peak RSS since the last :func:`reset_hwm` (MiB)."""
    return proc_status_mib("VmHWM")


def reset_hwm() -> bool:
    """Restart VmHWM from the current RSS (Linux: write 5 to /proc/self/clear_refs); False where unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def build_input(frames: int, size: int, cache: Path | None):
    """(inference()-style output, (flow_ij, flow_ji)) of a synthetic scene, cached as a torch file."""
    import numpy as np
    import torch
    if cache is not None:
        path = cache / f"rss_input_{frames}x{size}.pt"
        if path.exists():
            return torch.load(path, weights_only=False)
    from monst3r.datasets.synthetic import SyntheticScene
    sc = SyntheticScene(width=size, height=size, num_frames=frames, seed=1, num_objects=2)
    fw = [(i, i + k) for i in range(frames) for k in (1, 3, 5, 7, 9) if i + k < frames]
    pairs = fw + [(j, i) for i, j in fw]
    out = sc.ideal_inference(pairs, noise_std=0.01, scale=None, gt_dynamic_mask=True)
    flows = sc.flows(pairs)
    fij = torch.tensor(np.stack([flows[p][0] for p in pairs])).permute(0, 3, 1, 2).contiguous()
    fji = torch.tensor(np.stack([sc.flow(j, i)[0] for i, j in pairs])).permute(0, 3, 1, 2).contiguous()
    res = (out, (fij, fji))
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
        torch.save(res, path)
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--size", type=int, default=224, help="image width = height")
    ap.add_argument("--niter", type=int, default=300)
    ap.add_argument("--mode", choices=("batched", "nonbatched", "window"), default="batched")
    ap.add_argument("--window", type=int, default=6, help="window size of --mode window")
    ap.add_argument("--every", type=int, default=0, help="print the RSS every N iterations (default niter / 10)")
    ap.add_argument("--flow_loss_weight", type=float, default=0.01)
    ap.add_argument("--temporal_smoothing_weight", type=float, default=0.01)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cache", default="/tmp/monst3r_bench_rss", help="input cache folder ('' = none)")
    args = ap.parse_args(argv)

    import torch
    torch.set_num_threads(args.threads)
    from monst3r.cloud_opt import global_aligner

    out, flows = build_input(args.frames, args.size, Path(args.cache) if args.cache else None)
    kw = dict(shared_focal=True, temporal_smoothing_weight=args.temporal_smoothing_weight, translation_weight=1.0,
              flow_loss_weight=args.flow_loss_weight, flow_loss_start_epoch=0.1, flow_loss_thre=25, pxl_thre=50,
              use_self_mask=False, sam2_mask_refine=False, num_total_iter=args.niter, verbose=False)
    if args.mode == "nonbatched":
        kw.update(batchify=False)
    elif args.mode == "window":
        kw.update(window_wise=True, window_size=args.window, window_overlap_ratio=0.5)
    net = global_aligner(out, device="cpu", flows=flows, **kw)
    del out, flows

    every = args.every or max(1, args.niter // 10)
    state = dict(it=0, t0=None, rss0=None)
    loss_fn = net._loss  # every mode computes its loss here once per iteration

    def counted_loss(*a, **k):
        if state["t0"] is None:
            state["t0"], state["rss0"], state["peak0"] = time.perf_counter(), rss_mib(), peak_rss_mib()
            print(f"before loop: rss {state['rss0']:.0f} MiB, peak {state['peak0']:.0f} MiB", flush=True)
            # (resetting VmHWM also lowers ru_maxrss on Linux: the process peak is max(peak0, later peaks))
            state["hwm_reset"] = reset_hwm()
        res = loss_fn(*a, **k)
        state["it"] += 1
        if state["it"] % every == 0:
            print(f"iter {state['it']:6d}: rss {rss_mib():7.0f} MiB, loop peak {hwm_mib():7.0f} MiB", flush=True)
        return res
    net._loss = counted_loss
    net.compute_global_alignment(init="mst", niter=args.niter, schedule="linear", lr=0.01)
    t1 = time.perf_counter()
    n_loss = state["it"]
    summary = dict(mode=args.mode, frames=args.frames, size=args.size, niter=args.niter, pairs=net.n_edges,
                   loss_evals=n_loss, threads=args.threads, peak_rss_mib=round(max(state["peak0"], peak_rss_mib()), 1),
                   rss_before_loop_mib=round(state["rss0"], 1), rss_end_mib=round(rss_mib(), 1),
                   ms_per_iter=round(1000 * (t1 - state["t0"]) / max(n_loss, 1), 2),
                   final_loss=net.history["loss"][-1])
    summary["loop_growth_mib"] = round(summary["peak_rss_mib"] - summary["rss_before_loop_mib"], 1)
    if state.get("hwm_reset"):
        summary["loop_peak_rss_mib"] = round(hwm_mib(), 1)
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
