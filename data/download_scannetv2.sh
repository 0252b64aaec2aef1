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
[ "$DRY_RUN" = 1 ] || "${PYTHON:-python3}" "$ROOT/data/prepare_eval_scannet.py" --root "$DEST"
echo "done: $DEST/scene*_00/{color_90,depth_90,pose_90.txt}"
