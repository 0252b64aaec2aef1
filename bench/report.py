"""Render every benchmark result in ``bench/results/*.jsonl`` as Markdown tables (the README's figures).

    python bench/report.py            # prints the tables
    python bench/report.py --readme   # also replaces the block between the BENCH markers in README.md

Each row names the device it was measured on; rows from different devices are never merged.
"""
from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COLUMNS = {
    "forward": ["config", "size", "batch", "dtype", "median_s", "pairs_per_s", "peak_gpu_gib", "peak_rss_gib", "device"],
    "optimizer": ["size", "mode", "frames", "height", "width", "pairs", "s_per_iter", "peak_mem_gib", "peak_mem_kind",
                  "device"],
    "demo": ["config", "frames", "size", "dtype", "niter", "flow_loss_weight", "mode", "total_s", "s_per_frame", "inference_s",
             "flow+masks_s", "optimization_s", "peak_gpu_gib", "peak_tensor_gib", "device"],
    "inference": ["config", "frames", "pairs", "size", "batch", "dtype", "encoder_cache", "seconds", "pairs_per_s",
                  "peak_gpu_gib", "vs_fp32_pts1_median_rel", "vs_fp32_pts1_max_rel", "device"],
}


def fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


def _demo_mode(r: dict) -> str:
    if r.get("streaming"):
        return f"streaming w{r.get('window_size')}"
    if r.get("window_wise"):
        return f"window w{r.get('window_size')}"
    return "batched" if r.get("batchify", True) else "non-batched"


def load_rows(folder: Path):
    rows = defaultdict(list)
    for f in sorted(folder.glob("*.jsonl")):
        for line in f.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                if "records" in r:  # bench_optimizer writes one line per run with nested records
                    for rec in r["records"]:
                        rows["optimizer"].append(dict(rec, loadavg=r.get("loadavg")))
                    continue
                if r.get("bench") == "demo":
                    r.setdefault("mode", _demo_mode(r))
                    r.setdefault("flow_loss_weight", 0.01)  # rows from before the field existed: demo defaults
                rows[r.get("bench", f.stem)].append(r)
    return rows


def render(rows) -> str:
    out = []
    for bench, rs in rows.items():
        cols = COLUMNS.get(bench) or [k for k in rs[0] if k not in ("bench", "time", "torch")]
        cols = [c for c in cols if any(c in r for r in rs)]
        out.append(f"### {bench}\n")
        out.append("| " + " | ".join(cols) + " |")
        out.append("|" + "---|" * len(cols))
        for r in rs:
            out.append("| " + " | ".join(fmt(r.get(c)) for c in cols) + " |")
        out.append("")
    return "\n".join(out)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--results", default=str(ROOT / "bench" / "results"))
    p.add_argument("--readme", action="store_true")
    a = p.parse_args(argv)
    text = render(load_rows(Path(a.results)))
    print(text)
    if a.readme:
        readme = ROOT / "README.md"
        s = readme.read_text()
        start, end = "<!-- BENCH:START -->", "<!-- BENCH:END -->"
        if start in s and end in s:
            s = s[: s.index(start) + len(start)] + "\n" + text + "\n" + s[s.index(end):]
            readme.write_text(s)


if __name__ == "__main__":
    main()
