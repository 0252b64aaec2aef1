#!/usr/bin/env bash
# KITTI depth (selection + annotated depth) and the 13 raw validation drives -> data/kitti/, then gathers the
# video-depth evaluation set (110 frames per drive) with data/prepare_eval_kitti.py.
#
# Usage: bash data/download_kitti.sh [--dry-run]   (works from any directory; MONST3R_DATA_ROOT overrides data/)
# PYTHON=... picks the interpreter of the preparation step (default python3; e.g. PYTHON=.venv/bin/python).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DATA="${MONST3R_DATA_ROOT:-$ROOT/data}"
DRY_RUN=0
for arg in "$@"; do
  case "$arg" in
    --dry-run) DRY_RUN=1 ;;
    -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $arg (expected --dry-run)" >&2; exit 2 ;;
  esac
done
have() { command -v "$1" >/dev/null 2>&1; }
# fetch URL DEST_FILE: download through a temporary name (curl or wget); skipped when DEST_FILE exists.
fetch() {
  local url="$1" dest="$2"
  if [ -s "$dest" ]; then echo "skip (exists): $dest"; return 0; fi
  echo "download: $url -> $dest"
  [ "$DRY_RUN" = 1 ] && return 0
  mkdir -p "$(dirname "$dest")"
  if have curl; then curl -fL --retry 3 -o "$dest.part" "$url"
  elif have wget; then wget -q --no-proxy -O "$dest.part" "$url"
  else echo "neither curl nor wget is installed" >&2; return 1; fi
  mv -f "$dest.part" "$dest"
}
# unpack ARCHIVE DIR: extract (zip, tar, tgz) into DIR, then delete the archive.
unpack() {
  local archive="$1" dir="$2"
  [ "$DRY_RUN" = 1 ] && { echo "extract: $archive -> $dir"; return 0; }
  echo "extract: $archive -> $dir"
  mkdir -p "$dir"
  case "$archive" in
    *.zip) if have unzip; then unzip -q -o "$archive" -d "$dir"; else python3 -m zipfile -e "$archive" "$dir"; fi ;;
    *.tar|*.tgz|*.tar.gz) tar -xf "$archive" -C "$dir" ;;
    *) echo "unknown archive type: $archive" >&2; return 1 ;;
  esac
  rm -f "$archive"
}

DEST="$DATA/kitti"
S3=https://s3.eu-central-1.amazonaws.com/avg-kitti
for name in data_depth_selection.zip data_depth_annotated.zip; do
  fetch "$S3/data/$name" "$DEST/$name"
  unpack "$DEST/$name" "$DEST"
done
for drive in 2011_09_26_drive_0002 2011_09_26_drive_0005 2011_09_26_drive_0013 2011_09_26_drive_0020 \
             2011_09_26_drive_0023 2011_09_26_drive_0036 2011_09_26_drive_0079 2011_09_26_drive_0095 \
             2011_09_26_drive_0113 2011_09_28_drive_0037 2011_09_29_drive_0026 2011_09_30_drive_0016 \
             2011_10_03_drive_0047; do
  zip="$DEST/${drive}_sync.zip"
  fetch "$S3/raw_data/$drive/${drive}_sync.zip" "$zip"
  unpack "$zip" "$DEST"
done
[ "$DRY_RUN" = 1 ] || "${PYTHON:-python3}" "$ROOT/data/prepare_eval_kitti.py" --root "$DEST"
echo "done: $DEST/depth_selection/val_selection_cropped/{image_gathered,groundtruth_depth_gathered}"
