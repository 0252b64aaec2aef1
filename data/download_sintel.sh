#!/usr/bin/env bash
# MPI Sintel (training images, depth + cameras, extras with optical flow) -> data/sintel/training/...
# Used by the Sintel pose and video-depth evaluations (data/evaluation_script.md).
#
# Usage: bash data/download_sintel.sh [--dry-run]   (works from any directory; MONST3R_DATA_ROOT overrides data/)
# Optional afterwards: python data/prepare_eval_sintel_dynamics.py --threshold 0.1  (GT dynamic masks)
set -euo pipefail

# shared helpers: ROOT, DATA, DRY_RUN (parses --dry-run / --help), fetch URL DEST, unpack ARCHIVE DIR,
# fetch_unpack URL ARCHIVE DIR, prepare SCRIPT ARGS...
source "$(dirname "${BASH_SOURCE[0]}")/download_common.sh" "$@"

DEST="$DATA/sintel"
for url in http://files.is.tue.mpg.de/sintel/MPI-Sintel-training_images.zip \
           http://files.is.tue.mpg.de/jwulff/sintel/MPI-Sintel-depth-training-20150305.zip \
           http://files.is.tue.mpg.de/sintel/MPI-Sintel-training_extras.zip; do
  fetch_unpack "$url" "$DEST/$(basename "$url")" "$DEST"
done
echo "done: $DEST/training/{final,clean,depth,camdata_left,flow}"
