#!/usr/bin/env bash
# PointOdyssey for training (spec training.md 7.7) -> data/point_odyssey/{train,test,sample}/<seq>/
#   rgbs/rgb_%05d.jpg  depths/depth_%05d.png  normals/  info.npz  anno.npz
# Usage: bash data/prepare_pointodyssey.sh [--dry-run]        (needs gdown: pip install gdown)
# The README recipe reads dataset_location='data/point_odyssey' (the loader's default is data/pointodyssey).
source "$(dirname "${BASH_SOURCE[0]}")/prepare_common.sh"
[ "${1:-}" = "--dry-run" ] && DRY_RUN=1
need gdown "pip install gdown"
OUT="$DATA_DIR/point_odyssey"
mkdir -p "$OUT"
cd "$OUT"
for id in 1ivaHRZV6iwxxH4qk8IAIyrOF9jrppDIP 1jn8l28BBNw9f9wYFmd5WOCERH48-GsgB 1dnl9XMImdwKX2KcZCTuVDhcy5h8qzQIO; do
  run gdown --id "$id"     # train, test, sample archives
done
for f in *.tar.gz; do
  [ -e "$f" ] || continue
  run tar -xzf "$f" && run rm -f "$f"
done
echo "PointOdyssey ready in $OUT"
