#!/usr/bin/env bash
# MPI Sintel (training images, depth, camera data) -> data/sintel/training/{clean,final,depth,camdata_left}/<seq>/
# Usage: bash data/prepare_sintel.sh [--dry-run]
# Optional dynamic labels (data/sintel/training/dynamic_label_perfect/) come from the evaluation's preparation
# (see data/evaluation_script.md when present); the loader treats a missing label as "all dynamic".
source "$(dirname "${BASH_SOURCE[0]}")/prepare_common.sh"
[ "${1:-}" = "--dry-run" ] && DRY_RUN=1
OUT="$DATA_DIR/sintel"
mkdir -p "$OUT"
cd "$OUT"
for url in http://files.is.tue.mpg.de/sintel/MPI-Sintel-training_images.zip \
           http://files.is.tue.mpg.de/jwulff/sintel/MPI-Sintel-depth-training-20150305.zip \
           http://files.is.tue.mpg.de/sintel/MPI-Sintel-training_extras.zip; do
  f="$(basename "$url")"
  fetch "$url" "$f"
  run unzip -q -o "$f" && run rm -f "$f"
done
echo "Sintel ready in $OUT/training"
