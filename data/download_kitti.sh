#!/usr/bin/env bash
# KITTI depth (selection + annotated depth) and the 13 raw validation drives -> data/kitti/, then gathers the
# video-depth evaluation set (110 frames per drive) with data/prepare_eval_kitti.py.
#
# Usage: bash data/download_kitti.sh [--dry-run]   (works from any directory; MONST3R_DATA_ROOT overrides data/)
# PYTHON=... picks the interpreter of the preparation step (default python3; e.g. PYTHON=.venv/bin/python).
set -euo pipefail

# shared helpers: ROOT, DATA, DRY_RUN (parses --dry-run / --help), fetch URL DEST, unpack ARCHIVE DIR,
# fetch_unpack URL ARCHIVE DIR, prepare SCRIPT ARGS...
source "$(dirname "${BASH_SOURCE[0]}")/download_common.sh" "$@"

DEST="$DATA/kitti"
S3=https://s3.eu-central-1.amazonaws.com/avg-kitti
for name in data_depth_selection.zip data_depth_annotated.zip; do
  fetch_unpack "$S3/data/$name" "$DEST/$name" "$DEST"
done
for drive in 2011_09_26_drive_0002 2011_09_26_drive_0005 2011_09_26_drive_0013 2011_09_26_drive_0020 \
             2011_09_26_drive_0023 2011_09_26_drive_0036 2011_09_26_drive_0079 2011_09_26_drive_0095 \
             2011_09_26_drive_0113 2011_09_28_drive_0037 2011_09_29_drive_0026 2011_09_30_drive_0016 \
             2011_10_03_drive_0047; do
  fetch_unpack "$S3/raw_data/$drive/${drive}_sync.zip" "$DEST/${drive}_sync.zip" "$DEST"
done
prepare prepare_eval_kitti.py --root "$DEST"
echo "done: $DEST/depth_selection/val_selection_cropped/{image_gathered,groundtruth_depth_gathered}"
