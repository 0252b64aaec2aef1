#!/usr/bin/env bash
# Waymo Open v1.4.2 training segments -> data/waymo_processed/<segment>.tfrecord/{%05d_<cam>.jpg,.exr,.npz}
#                                        + data/waymo_processed/waymo_pairs_video.npz
# Usage: bash data/prepare_waymo.sh [--dry-run]
# Needs the Google Cloud SDK (gsutil, logged in with access to the Waymo Open Dataset) for the download, and
# tensorflow + waymo-open-dataset-tf-2-12-0 for the conversion (see data/prepare_waymo.py).
source "$(dirname "${BASH_SOURCE[0]}")/prepare_common.sh"
[ "${1:-}" = "--dry-run" ] && DRY_RUN=1
PY="${PYTHON:-python}"
RAW="$DATA_DIR/waymo"
OUT="$DATA_DIR/waymo_processed"
mkdir -p "$RAW" "$OUT"
need gsutil "install the Google Cloud SDK and run 'gcloud auth login'"
run gsutil -m cp -r gs://waymo_open_dataset_v_1_4_2/individual_files/training/ "$RAW/"
run "$PY" "$DATA_DIR/prepare_waymo.py" preprocess --waymo_dir "$RAW/training" --output_dir "$OUT"
run "$PY" "$DATA_DIR/prepare_waymo.py" make-pairs --output_dir "$OUT" --name waymo_pairs_video.npz
echo "Waymo ready in $OUT"
