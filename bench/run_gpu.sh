#!/usr/bin/env bash
# The whole GPU measurement in one call (< 8 minutes on one H100): network throughput and memory (fp32, bf16),
# end-to-end pair inference of a 65-frame 512x288 video (600 pairs; original-style per-pair encoding vs our
# encoder cache; bf16 vs fp32 error), and the optimizer benchmark when present. Results: bench/results/*.jsonl
# (copied to $OUT when that variable is set).
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
PY=${PY:-python3}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
$PY bench/bench_forward.py --config vitl --size 512 --batch 8 --dtype fp32 --iters 5
$PY bench/bench_forward.py --config vitl --size 512 --batch 8 --dtype bf16 --iters 5
$PY bench/bench_inference.py --config vitl --frames 65 --size 512 --batch 16 --runs fp32:nocache,fp32:cache,bf16:cache
if [ -f bench/bench_optimizer.py ]; then timeout 120 $PY bench/bench_optimizer.py --device cuda --no_post || true; fi
timeout 150 $PY bench/bench_demo.py --device cuda --frames 65 --dtype fp32 || true
timeout 120 $PY bench/bench_demo.py --device cuda --frames 65 --dtype bf16 || true
$PY bench/report.py
if [ -n "${OUT:-}" ]; then cp bench/results/*.jsonl "$OUT"/ 2>/dev/null || true; fi
