#!/usr/bin/env bash
# NYU-Depth-v2 validation split (654 .h5 images, Hugging Face mirror) -> data/nyu-v2/, converted with
# data/prepare_eval_nyuv2.py into data/nyu-v2/val/{nyu_images,nyu_depths}. (The original script wrote data/nyu_v2
# while everything else reads data/nyu-v2; this one writes data/nyu-v2 directly.)
#
# Usage: bash data/download_nyuv2.sh [--dry-run]   (works from any directory; MONST3R_DATA_ROOT overrides data/)
# PYTHON=... picks the interpreter of the preparation step (default python3; e.g. PYTHON=.venv/bin/python).
set -euo pipefail

# shared helpers: ROOT, DATA, DRY_RUN (parses --dry-run / --help), fetch URL DEST, unpack ARCHIVE DIR,
# fetch_unpack URL ARCHIVE DIR, prepare SCRIPT ARGS...
source "$(dirname "${BASH_SOURCE[0]}")/download_common.sh" "$@"

DEST="$DATA/nyu-v2"
HF=https://huggingface.co/datasets/sayakpaul/nyu_depth_v2/resolve/main/data
for name in val-000000.tar val-000001.tar; do
  fetch_unpack "$HF/$name" "$DEST/$name" "$DEST"
done
prepare prepare_eval_nyuv2.py --root "$DEST"
echo "done: $DEST/val/{nyu_images,nyu_depths}"
