#!/usr/bin/env bash
# Dynamic Replica (train split, left views) -> data/dynamic_replica/ with frame_annotations_train.json
# Usage: bash data/prepare_dynamic_replica.sh [--dry-run]        (about 86 archives)
source "$(dirname "${BASH_SOURCE[0]}")/prepare_common.sh"
[ "${1:-}" = "--dry-run" ] && DRY_RUN=1
OUT="$DATA_DIR/dynamic_replica"
mkdir -p "$OUT"
cd "$OUT"
for i in $(seq -f "%03g" 0 85); do
  f="train_$i.zip"
  fetch "https://dl.fbaipublicfiles.com/dynamic_replica_v2/train/$f" "$f"
  run unzip -q -o "$f" && run rm -f "$f"
done
run find . -maxdepth 2 -type d -name "*right" -exec rm -rf {} +
fetch "https://dl.fbaipublicfiles.com/dynamic_replica_v2/train/frame_annotations_train.jgz" frame_annotations_train.jgz
if [ "$DRY_RUN" != 1 ]; then gunzip -c frame_annotations_train.jgz > frame_annotations_train.json; fi
echo "Dynamic Replica ready in $OUT"
