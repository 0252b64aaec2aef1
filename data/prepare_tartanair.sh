#!/usr/bin/env bash
# TartanAir (Hard, left camera, RGB + depth) for training -> data/tartanair/<env>/Hard/P###/
#   image_left/%06d_left.png  depth_left/%06d_left_depth.npy  pose_left.txt
# Usage: bash data/prepare_tartanair.sh [--dry-run]
# Downloads with data/prepare_tartanair.py from TartanAir's public bucket (S3 API, needs boto3). The endpoint and
# the public read-only key pair are those of TartanAir's official download tool: export
# TARTANAIR_ENDPOINT_URL, TARTANAIR_ACCESS_KEY and TARTANAIR_SECRET_KEY before running.
source "$(dirname "${BASH_SOURCE[0]}")/prepare_common.sh"
[ "${1:-}" = "--dry-run" ] && DRY_RUN=1
PY="${PYTHON:-python}"
OUT="$DATA_DIR/tartanair"
mkdir -p "$OUT"
run "$PY" "$DATA_DIR/prepare_tartanair.py" --output-dir "$OUT" --rgb --depth --only-left --only-hard \
  $([ "$DRY_RUN" = 1 ] && echo --dry-run)
cd "$OUT"
for z in *.zip; do
  [ -e "$z" ] || continue
  run unzip -q -o "$z" && run rm -f "$z"
done
echo "TartanAir ready in $OUT"
