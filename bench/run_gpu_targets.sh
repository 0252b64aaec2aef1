#!/usr/bin/env bash
# Issue 9's GPU targets in one call (about 8 minutes on one H100): the 65-frame 512x288 demo end to end (pair
# inference, flow, dynamic masks, 300 iterations; fp32 then bf16: < 30 s and < 8 GB wanted), then the streaming
# mode on 200 and 1000 frames (window 100, 50% overlap, bf16, 50 iterations per window: peak memory must not grow,
# seconds per frame must stay flat). Random ViT-L and SEA-RAFT weights, synthetic video (frames cached in
# bench/.cache). Each run appends to bench/results/demo.jsonl; streaming runs print one line per chunk, so a run cut
# by its timeout still leaves its per-chunk figures in the log. Copies the results to $OUT when set.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
PY=${PY:-python3}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
save() { if [ -n "${OUT:-}" ]; then cp bench/results/*.jsonl "$OUT"/ 2>/dev/null || true; fi; }
# worst case 95 + 75 + 85 + 320 s: inside a 600 s command limit, results saved after every run
timeout 95 $PY bench/bench_demo.py --device cuda --frames 65 --dtype fp32 || true; save
timeout 75 $PY bench/bench_demo.py --device cuda --frames 65 --dtype bf16 || true; save
timeout 85 $PY bench/bench_demo.py --device cuda --frames 200 --unique_frames 100 --streaming --niter 50 --dtype bf16 || true; save
timeout 320 $PY bench/bench_demo.py --device cuda --frames 1000 --unique_frames 100 --streaming --niter 50 --dtype bf16 || true; save
$PY bench/report.py | head -20
