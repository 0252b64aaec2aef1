#!/usr/bin/env bash
# The speed issue's GPU targets in one call (under 10 minutes): `torchrun --nproc_per_node=1 demo.py` with NCCL
# (bench/torchrun_check.sh), the 65-frame 512x288 demo end to end (pair inference, flow, dynamic masks, 300
# iterations, post-processing, writing; fp32 then bf16: < 20 s and < 8 GiB wanted, per-phase times recorded), then
# the streaming mode on 200 and 1000 frames (window 100, 50% overlap, bf16, 50 iterations per window: < 16 GiB,
# seconds per frame flat). Random ViT-L and SEA-RAFT weights, synthetic video (frames cached in
# bench/.cache). Each run appends to bench/results/demo.jsonl; streaming runs print one line per chunk, so a run cut
# by its timeout still leaves its per-chunk figures in the log. Copies the results to $OUT when set.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
PY=${PY:-python3}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
save() { if [ -n "${OUT:-}" ]; then cp bench/results/*.jsonl "$OUT"/ 2>/dev/null || true; fi; }
# worst case 45 + 95 + 75 + 85 + 290 s: inside a 600 s command limit, results saved after every run
PY=$PY timeout 45 bash bench/torchrun_check.sh cuda || true
timeout 95 $PY bench/bench_demo.py --device cuda --frames 65 --dtype fp32 || true; save
timeout 75 $PY bench/bench_demo.py --device cuda --frames 65 --dtype bf16 || true; save
timeout 85 $PY bench/bench_demo.py --device cuda --frames 200 --unique_frames 100 --streaming --niter 50 --dtype bf16 || true; save
timeout 290 $PY bench/bench_demo.py --device cuda --frames 1000 --unique_frames 100 --streaming --niter 50 --dtype bf16 || true; save
$PY bench/report.py | head -20
