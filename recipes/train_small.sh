#!/usr/bin/env bash
# The compact MonST3R shipped in checkpoints/monst3r_synthetic_small.pth, trained from scratch on CPU
# (`make train-small`; README "The compact model"). From an empty folder: renders the training and validation
# scenes (complete scenes are kept on a re-run), trains with the project's own `torchrun launch.py --mode=train`
# (2 processes, Gloo, seed 0; an interrupted run resumes from $OUT/checkpoint-last.pth), then exports the final
# weights (fp16, loadable with weights_only=True).
# Loss curve: $OUT/log_iters.jsonl (one line per iteration) and $OUT/log.txt (one per epoch);
# `python recipes/plot_loss.py $OUT docs/compact_model_loss.png` draws it.
# Environment overrides (defaults = the shipped model): PY, OUT, DATA, EPOCHS, PAIRS (per epoch), BATCH (per
# process), TRAIN_SEEDS, VAL_SEEDS, FRAMES, DEVICE (cpu or cuda), NPROC, EXPORT (where the weights go), MASTER_PORT.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-build/train_small}
DATA=${DATA:-build}
EPOCHS=${EPOCHS:-24}
PAIRS=${PAIRS:-1440}
BATCH=${BATCH:-8}
TRAIN_SEEDS=${TRAIN_SEEDS:-1000:1240}
VAL_SEEDS=${VAL_SEEDS:-9100:9104}
FRAMES=${FRAMES:-24}
DEVICE=${DEVICE:-cpu}
NPROC=${NPROC:-2}
EXPORT=${EXPORT:-checkpoints/monst3r_synthetic_small.pth}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

MODEL="$($PY -c 'from monst3r.model_zoo import COMPACT_MODEL_STRING as s; print(s)')"
TRAIN="$PAIRS @ SyntheticDUSt3R(dataset_location='$DATA/synthetic_train', strides=[1,2,3,5,7,9], resolution=[(224, 224)], transform=ColorJitter, aug_crop=16)"
TEST="64 @ SyntheticDUSt3R(dataset_location='$DATA/synthetic_val', strides=[1,5,9], resolution=[(224, 224)], seed=777)"

# 1. scenes: training seeds 1000..1239, validation seeds 9100..9103; 24 frames of 400x225 each
$PY -m monst3r.datasets.synthetic.collection --out "$DATA/synthetic_train" --seeds "$TRAIN_SEEDS" --frames "$FRAMES" --size 400x225
$PY -m monst3r.datasets.synthetic.collection --out "$DATA/synthetic_val" --seeds "$VAL_SEEDS" --frames "$FRAMES" --size 400x225

# 2. training: 24 epochs x 90 iterations x 16 pairs (8 per process, symmetrised to 16), AdamW, lr 5e-4 cosine
$PY -m torch.distributed.run --nproc_per_node="$NPROC" --master_port="${MASTER_PORT:-29531}" launch.py --mode=train \
  --model="$MODEL" --train_dataset="$TRAIN" --test_dataset="$TEST" \
  --train_criterion="ConfLoss(Regr3D(L21, norm_mode='avg_dis'), alpha=0.2)" \
  --test_criterion="Regr3D_ScaleShiftInv(L21, gt_scale=True)" \
  --lr=5e-4 --min_lr=1e-6 --warmup_epochs=2 --weight_decay=0.05 --epochs="$EPOCHS" --batch_size="$BATCH" \
  --num_workers=1 --device="$DEVICE" --seed=0 --eval_freq=4 --keep_freq=8 --print_freq=30 --num_save_visual=0 \
  --output_dir="$OUT"

# 3. export: the final weights in half precision with the model string (about 7 MiB)
$PY -m monst3r.model_zoo export "$OUT/checkpoint-final.pth" "$EXPORT"
