#!/usr/bin/env bash
# Long videos on one GPU in one call (< 8 minutes on one H100): the streaming window-wise mode on 200 and
# 1000 frames at 512x288 (window 100, overlap 50%, bf16 network, random ViT-L and SEA-RAFT weights), to show
# peak GPU memory independent of the length and time linear in it. 50 iterations per window keep the 1000-frame
# run inside the per-command limit; the per-chunk times in bench/results/demo.jsonl (chunk_s) give the
# 300-iteration figure. 100 synthetic frames are rendered and played back and forth (timing does not depend
# on the content). Results: bench/results/demo.jsonl (copied to $OUT when that variable is set).
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
PY=${PY:-python3}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
timeout 150 $PY bench/bench_optimizer.py --device cuda --sizes f200 --modes batched,window --no_post || true
for n in 200 1000; do
  timeout 420 $PY bench/bench_demo.py --device cuda --frames $n --unique_frames 100 --streaming --window_size 100 \
      --niter 50 --dtype bf16 || true
done
$PY bench/report.py
if [ -n "${OUT:-}" ]; then cp bench/results/*.jsonl "$OUT"/ 2>/dev/null || true; fi
