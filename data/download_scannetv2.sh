#!/usr/bin/env bash
# ScanNet v2 scenes scene0707_00 .. scene0806_00 (.sens recordings) -> data/scannetv2/<scene>/{color,depth,pose},
# exported 4 at a time with data/prepare_eval_scannet_sens.py (the .sens files are deleted afterwards), then the
# pose-evaluation subsets (color_90/, depth_90/, pose_90.txt) are built with data/prepare_eval_scannet.py.
# ScanNet is released under its Terms of Use: request access at http://www.scan-net.org/ first.
#
# Usage: bash data/download_scannetv2.sh [--dry-run]   (works from any directory; MONST3R_DATA_ROOT overrides data/)
# PYTHON=... picks the interpreter of the preparation step (default python3; e.g. PYTHON=.venv/bin/python).
# SCANNET_FRAMES=N exports only the first N frames of each scene (the evaluation uses frames 0..269; default all).
set -euo pipefail

# shared helpers: ROOT, DATA, DRY_RUN (parses --dry-run / --help), fetch URL DEST, unpack ARCHIVE DIR,
# fetch_unpack URL ARCHIVE DIR, prepare SCRIPT ARGS...
source "$(dirname "${BASH_SOURCE[0]}")/download_common.sh" "$@"

DEST="$DATA/scannetv2"
export_scene() {
  local id="$1" sens="$DEST/scene${1}_00.sens" extra=()
  [ -n "${SCANNET_FRAMES:-}" ] && extra=(--max_frames "$SCANNET_FRAMES")
  "${PYTHON:-python3}" "$ROOT/data/prepare_eval_scannet_sens.py" --filename "$sens" --output_path "$DEST/scene${id}_00" \
    "${extra[@]+"${extra[@]}"}" && rm -f "$sens"
}
pids=()
for i in $(seq 707 806); do
  id=$(printf "%04d" "$i")
  fetch "http://kaldir.vc.in.tum.de/scannet/v2/scans/scene${id}_00/scene${id}_00.sens" "$DEST/scene${id}_00.sens"
  [ "$DRY_RUN" = 1 ] && continue
  export_scene "$id" &
  pids+=("$!")
  if [ "${#pids[@]}" -ge 4 ]; then wait "${pids[0]}"; pids=("${pids[@]:1}"); fi
done
for pid in "${pids[@]+"${pids[@]}"}"; do wait "$pid"; done
prepare prepare_eval_scannet.py --root "$DEST"
echo "done: $DEST/scene*_00/{color_90,depth_90,pose_90.txt}"
