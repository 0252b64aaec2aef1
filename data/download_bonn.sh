#!/usr/bin/env bash
# Bonn RGB-D Dynamic Dataset -> data/bonn/rgbd_bonn_dataset/rgbd_bonn_<seq>/, then builds the evaluation subsets
# (rgb_110/, depth_110/, groundtruth_110.txt) with data/prepare_eval_bonn.py.
#
# Usage: bash data/download_bonn.sh [--dry-run]   (works from any directory; MONST3R_DATA_ROOT overrides data/)
# PYTHON=... picks the interpreter of the preparation step (default python3; e.g. PYTHON=.venv/bin/python).
set -euo pipefail

# shared helpers: ROOT, DATA, DRY_RUN (parses --dry-run / --help), fetch URL DEST, unpack ARCHIVE DIR,
# fetch_unpack URL ARCHIVE DIR, prepare SCRIPT ARGS...
source "$(dirname "${BASH_SOURCE[0]}")/download_common.sh" "$@"

DEST="$DATA/bonn"
fetch_unpack https://www.ipb.uni-bonn.de/html/projects/rgbd_dynamic2019/rgbd_bonn_dataset.zip \
  "$DEST/rgbd_bonn_dataset.zip" "$DEST"
prepare prepare_eval_bonn.py --root "$DEST/rgbd_bonn_dataset"
echo "done: $DEST/rgbd_bonn_dataset"
