# Helpers shared by data/prepare_*.sh (sourced, not run). Downloads go to a temporary name first.
set -euo pipefail
DATA_DIR="${MONST3R_DATA_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)}"
DRY_RUN="${DRY_RUN:-0}"

run() { if [ "$DRY_RUN" = 1 ]; then echo "+ $*"; else "$@"; fi; }

need() {
  command -v "$1" >/dev/null 2>&1 || { echo "error: '$1' is needed ($2)" >&2; exit 2; }
}

fetch() {  # fetch URL DEST: wget to DEST.part, then rename (skips existing files)
  local url="$1" dest="$2"
  if [ -e "$dest" ]; then echo "exists: $dest"; return 0; fi
  need wget "apt-get install wget"
  run wget --no-proxy -c -O "$dest.part" "$url"
  run mv "$dest.part" "$dest"
}
