# Helpers shared by the dataset download scripts (sourced, not run): sets ROOT (repository root), DATA
# (MONST3R_DATA_ROOT or data/), DRY_RUN from the caller's arguments, and defines have, fetch, unpack,
# fetch_unpack and prepare.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DATA="${MONST3R_DATA_ROOT:-$ROOT/data}"
DRY_RUN=0
for arg in "$@"; do
  case "$arg" in
    --dry-run) DRY_RUN=1 ;;
    -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[1]}" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
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
# fetch_unpack URL ARCHIVE DIR: fetch URL to ARCHIVE, extract it into DIR (then delete it).
fetch_unpack() { fetch "$1" "$2"; unpack "$2" "$3"; }
# prepare SCRIPT ARGS...: run data/SCRIPT (the evaluation's preparation) with ${PYTHON:-python3}; not with --dry-run.
prepare() { [ "$DRY_RUN" = 1 ] || "${PYTHON:-python3}" "$ROOT/data/$1" "${@:2}"; }
