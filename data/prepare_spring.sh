#!/usr/bin/env bash
# Spring for training -> data/spring/train/<seq>/
#   frame_left/frame_left_%04d.png  disp1_left/disp1_left_%04d.dsp5  cam_data/{extrinsics,intrinsics}.txt
# Usage: bash data/prepare_spring.sh [--dry-run]        (needs gdown; reading .dsp5 needs h5py)
source "$(dirname "${BASH_SOURCE[0]}")/prepare_common.sh"
[ "${1:-}" = "--dry-run" ] && DRY_RUN=1
need gdown "pip install gdown"
cd "$DATA_DIR"
run gdown --folder "https://drive.google.com/drive/folders/1oJqS7YOqtgO6l4WI_fdCZ-Jvp2RUvHZz?usp=sharing" -O spring
cd spring
for z in *.zip; do
  [ -e "$z" ] || continue
  run unzip -q -o "$z" && run rm -f "$z"
done
if [ -d spring ]; then run mv spring/* . && run rmdir spring; fi
echo "Spring ready in $DATA_DIR/spring"
