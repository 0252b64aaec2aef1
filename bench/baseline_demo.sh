#!/usr/bin/env bash
# Bit-identity check for refactors: the demo on the first 5 real frames (../shared/demo_data/lady-running) with the
# tiny golden checkpoint. Run it on the tree before and after a change and compare the folders:
#   bash bench/baseline_demo.sh /tmp/before   (old tree)   ;   bash bench/baseline_demo.sh /tmp/after   (new tree)
#   python bench/compare_dirs.py /tmp/before/seq /tmp/after/seq        # must print "0 differ" and no "only in"
set -e
OUT=$1
cd "$(dirname "$0")/.."
SHARED=$(cd .. && pwd)/shared
PY=${PY:-.venv/bin/python}
F=("$SHARED"/demo_data/lady-running/*)
rm -rf "$OUT"; mkdir -p "$OUT"
OMP_NUM_THREADS=2 HF_HUB_OFFLINE=1 $PY demo.py --input "${F[@]:0:5}" --output_dir "$OUT" --seq_name seq \
  --weights "$SHARED/golden/model/tiny_linear/tiny_linear.pth" --image_size 224 --niter 20 --flow_loss_weight 0 \
  --device cpu --silent --export ply,colmap
