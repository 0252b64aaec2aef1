#!/usr/bin/env bash
# `torchrun --nproc_per_node=1 demo.py` end to end on the GPU (NCCL process group): a random small checkpoint in
# the official .pth format, 6 synthetic frames, 20 iterations. Prints "torchrun_nccl: ok" or "torchrun_nccl: FAILED".
# Usage: bash bench/torchrun_check.sh [device]   (device: cuda (default) or cpu, which uses Gloo)
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
DEV=${1:-cuda}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
$PY - "$TMP" <<'PYEOF' || { echo "torchrun_nccl: FAILED (setup)"; exit 1; }
import argparse, sys
from pathlib import Path
import numpy as np, PIL.Image, torch
sys.path.insert(0, "bench")
from bench_forward import CONFIGS
from monst3r.datasets.synthetic import SceneConfig, SyntheticScene
from monst3r.model import model_from_string
tmp = Path(sys.argv[1])
model = model_from_string(CONFIGS["small"], for_inference=False)
torch.save({"model": model.state_dict(), "args": argparse.Namespace(model=CONFIGS["small"])}, tmp / "small.pth")
(tmp / "frames").mkdir()
for i, f in enumerate(SyntheticScene(SceneConfig(width=128, height=96, num_frames=6, seed=0)).frames()):
    PIL.Image.fromarray(f.rgb).save(tmp / "frames" / f"{i:05d}.png")
PYEOF
$PY -m torch.distributed.run --standalone --nproc_per_node=1 demo.py --input "$TMP/frames" --weights "$TMP/small.pth" \
  --device "$DEV" --image_size 224 --niter 20 --flow_loss_weight 0 --output_dir "$TMP/out" --seq_name s --silent \
  > "$TMP/log" 2>&1
rc=$?
tail -3 "$TMP/log"
if [ $rc -eq 0 ] && [ -f "$TMP/out/s/pred_traj.txt" ]; then echo "torchrun_nccl: ok"; else echo "torchrun_nccl: FAILED (rc $rc)"; exit 1; fi
