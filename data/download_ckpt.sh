#!/usr/bin/env bash
# Download the checkpoints MonST3R uses into the folders the code looks in by default (relative to the repo root):
#   checkpoints/MonST3R_PO-TA-S-W_ViTLarge_BaseDecoder_512_dpt.pth      MonST3R network (Google Drive, needs gdown)
#   third_party/RAFT/models/Tartan-C-T-TSKH-spring540x960-M.pth         SEA-RAFT 'M' (Google Drive, needs gdown;
#       without gdown: the same weights from Hugging Face as Tartan-C-T-TSKH-spring540x960-M.safetensors)
#   third_party/RAFT/models/raft-{sintel,things,chairs,kitti,small}.pth classic RAFT (Dropbox models.zip)
#   third_party/sam2/checkpoints/sam2.1_hiera_large.pt                  SAM2.1 Hiera-L (optional mask refinement)
#
# Usage: bash data/download_ckpt.sh [--dry-run] [all|monst3r|flow|sam2 ...]   (works from any directory)
# Files already present are skipped; downloads go to a temporary name and are moved into place when complete.
# MONST3R_CKPT_ROOT overrides the destination root (default: the repository root).
set -euo pipefail

ROOT="${MONST3R_CKPT_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
DRY_RUN=0
TARGETS=()
for arg in "$@"; do
  case "$arg" in
    --dry-run) DRY_RUN=1 ;;
    all|monst3r|flow|sam2) TARGETS+=("$arg") ;;
    -h|--help) sed -n '2,13p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "unknown argument: $arg (expected --dry-run, all, monst3r, flow, sam2)" >&2; exit 2 ;;
  esac
done
[ "${#TARGETS[@]}" -eq 0 ] && TARGETS=(all)

MONST3R_GDRIVE="https://drive.google.com/file/d/1Z1jO_JmfZj0z3bgMvCwqfUhyZ1bIbc9E/view?usp=sharing"
SEARAFT_GDRIVE="https://drive.google.com/file/d/1a0C5FTdhjM4rKrfXiGhec7eq2YM141lu/view?usp=drive_link"
SEARAFT_HF="https://huggingface.co/MemorySlices/Tartan-C-T-TSKH-spring540x960-M/resolve/main/model.safetensors"
RAFT_ZIP="https://www.dropbox.com/s/4j4z58wuv8o0mfz/models.zip"
SAM2_URL="https://dl.fbaipublicfiles.com/segment_anything_2/092824/sam2.1_hiera_large.pt"

MONST3R_DEST="checkpoints/MonST3R_PO-TA-S-W_ViTLarge_BaseDecoder_512_dpt.pth"
SEARAFT_DEST="third_party/RAFT/models/Tartan-C-T-TSKH-spring540x960-M.pth"
SEARAFT_ALT_DEST="third_party/RAFT/models/Tartan-C-T-TSKH-spring540x960-M.safetensors"
RAFT_DIR="third_party/RAFT/models"
SAM2_DEST="third_party/sam2/checkpoints/sam2.1_hiera_large.pt"

FAILED=()
TMP_FILES=()
cleanup() { local f; for f in "${TMP_FILES[@]+"${TMP_FILES[@]}"}"; do rm -rf -- "$f"; done; }
trap cleanup EXIT

wanted() { local t; for t in "${TARGETS[@]}"; do [ "$t" = all ] || [ "$t" = "$1" ] && return 0; done; return 1; }
have() { command -v "$1" >/dev/null 2>&1; }
present() { [ -s "$ROOT/$1" ]; }

# download_to URL FILE: curl or wget; non-zero on any HTTP/network error.
# (Functions below check every step with `|| return 1`: they run in `||` contexts where `set -e` is suspended.)
download_to() {
  if have curl; then curl -fL --retry 3 -o "$2" "$1"
  elif have wget; then wget -q -O "$2" "$1"
  else echo "neither curl nor wget is installed" >&2; return 1; fi
}

# fetch_url URL DEST: plain HTTP(S) download to DEST (relative to ROOT) through a temporary file.
fetch_url() {
  local url="$1" dest="$ROOT/$2" tmp
  if present "$2"; then echo "skip (exists): $2"; return 0; fi
  echo "download: $url -> $2"
  [ "$DRY_RUN" = 1 ] && return 0
  mkdir -p "$(dirname "$dest")" || return 1
  tmp="$dest.part.$$"; TMP_FILES+=("$tmp")
  download_to "$url" "$tmp" || return 1
  mv -f "$tmp" "$dest" || return 1
}

# fetch_gdrive URL DEST: Google Drive download with gdown (pip install gdown).
fetch_gdrive() {
  local url="$1" dest="$ROOT/$2" tmp
  if present "$2"; then echo "skip (exists): $2"; return 0; fi
  echo "download (gdown): $url -> $2"
  [ "$DRY_RUN" = 1 ] && return 0
  have gdown || { echo "gdown is not installed (pip install gdown)" >&2; return 1; }
  mkdir -p "$(dirname "$dest")" || return 1
  tmp="$dest.part.$$"; TMP_FILES+=("$tmp")
  gdown --fuzzy "$url" -O "$tmp" || return 1
  [ -s "$tmp" ] || { echo "gdown produced no file for $url" >&2; return 1; }
  mv -f "$tmp" "$dest" || return 1
}

get_monst3r() {
  fetch_gdrive "$MONST3R_GDRIVE" "$MONST3R_DEST" || {
    echo "MonST3R weights not downloaded; alternatively use the Hugging Face model" \
         "Junyi42/MonST3R_PO-TA-S-W_ViTLarge_BaseDecoder_512_dpt (demo.py --model_name)" >&2
    FAILED+=(monst3r); }
}

get_searaft() {
  if present "$SEARAFT_ALT_DEST"; then echo "skip (exists): $SEARAFT_ALT_DEST"; return 0; fi
  if have gdown || [ "$DRY_RUN" = 1 ] || present "$SEARAFT_DEST"; then
    fetch_gdrive "$SEARAFT_GDRIVE" "$SEARAFT_DEST" && return 0
  fi
  echo "SEA-RAFT from Google Drive failed or gdown missing; trying Hugging Face" >&2
  fetch_url "$SEARAFT_HF" "$SEARAFT_ALT_DEST" || FAILED+=(searaft)
}

get_raft() {
  local f missing=0 tmpdir
  for f in raft-sintel.pth raft-things.pth; do present "$RAFT_DIR/$f" || missing=1; done
  if [ "$missing" = 0 ]; then echo "skip (exists): $RAFT_DIR/raft-sintel.pth, raft-things.pth"; return 0; fi
  echo "download: $RAFT_ZIP -> $RAFT_DIR/"
  [ "$DRY_RUN" = 1 ] && return 0
  tmpdir="$(mktemp -d "${TMPDIR:-/tmp}/raft_models.XXXXXX")"; TMP_FILES+=("$tmpdir")
  download_to "$RAFT_ZIP" "$tmpdir/models.zip" || return 1
  if have unzip; then unzip -q "$tmpdir/models.zip" -d "$tmpdir/x" || return 1
  else python3 -m zipfile -e "$tmpdir/models.zip" "$tmpdir/x" || return 1; fi
  mkdir -p "$ROOT/$RAFT_DIR" || return 1
  for f in "$tmpdir"/x/*.pth "$tmpdir"/x/*/*.pth; do
    [ -e "$f" ] || continue
    if present "$RAFT_DIR/$(basename "$f")"; then echo "skip (exists): $RAFT_DIR/$(basename "$f")"
    else mv -f "$f" "$ROOT/$RAFT_DIR/$(basename "$f")" || return 1; echo "installed: $RAFT_DIR/$(basename "$f")"; fi
  done
  for f in raft-sintel.pth raft-things.pth; do
    present "$RAFT_DIR/$f" || { echo "$f not found in models.zip" >&2; return 1; }
  done
}

if wanted monst3r; then get_monst3r; fi
if wanted flow; then
  get_searaft
  get_raft || FAILED+=(raft)
fi
if wanted sam2; then fetch_url "$SAM2_URL" "$SAM2_DEST" || FAILED+=(sam2); fi

if [ "${#FAILED[@]}" -gt 0 ]; then
  echo "failed: ${FAILED[*]} (see messages above)" >&2
  exit 1
fi
echo "done"
