#!/usr/bin/env bash
# NYU-Depth-v2 validation split (654 .h5 images, Hugging Face mirror) -> data/nyu-v2/, converted with
# data/prepare_eval_nyuv2.py into data/nyu-v2/val/{nyu_images,nyu_depths}. (The original script wrote data/nyu_v2
# while everything else reads data/nyu-v2; this one writes data/nyu-v2 directly.)
#
# Usage: bash data/download_nyuv2.sh [--dry-run]   (works from any directory; MONST3R_DATA_ROOT overrides data/)
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

DEST="$DATA/nyu-v2"
HF=https://huggingface.co/datasets/sayakpaul/nyu_depth_v2/resolve/main/data
for name in val-000000.tar val-000001.tar; do
  fetch "$HF/$name" "$DEST/$name"
  unpack "$DEST/$name" "$DEST"
done
[ "$DRY_RUN" = 1 ] || "${PYTHON:-python3}" "$ROOT/data/prepare_eval_nyuv2.py" --root "$DEST"
echo "done: $DEST/val/{nyu_images,nyu_depths}"
