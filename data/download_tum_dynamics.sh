#!/usr/bin/env bash
# TUM RGB-D dynamic objects (the 8 freiburg3 sitting/walking sequences) -> data/tum/<sequence>/, then builds the
# pose-evaluation subsets (rgb_90/, groundtruth_90.txt) with data/prepare_eval_tum.py.
#
# Usage: bash data/download_tum_dynamics.sh [--dry-run]   (works from any directory; MONST3R_DATA_ROOT overrides data/)
# PYTHON=... picks the interpreter of the preparation step (default python3; e.g. PYTHON=.venv/bin/python).
set -euo pipefail

# shared helpers: ROOT, DATA, DRY_RUN (parses --dry-run / --help), fetch URL DEST, unpack ARCHIVE DIR,
# fetch_unpack URL ARCHIVE DIR, prepare SCRIPT ARGS...
source "$(dirname "${BASH_SOURCE[0]}")/download_common.sh" "$@"

DEST="$DATA/tum"
for seq in sitting_static sitting_xyz sitting_halfsphere sitting_rpy walking_static walking_xyz \
           walking_halfsphere walking_rpy; do
  name="rgbd_dataset_freiburg3_${seq}.tgz"
  fetch_unpack "https://cvg.cit.tum.de/rgbd/dataset/freiburg3/$name" "$DEST/$name" "$DEST"
done
prepare prepare_eval_tum.py --root "$DEST"
echo "done: $DEST/rgbd_dataset_freiburg3_*/{rgb_90,groundtruth_90.txt}"
