#!/usr/bin/env bash
# The compact MonST3R shipped in checkpoints/monst3r_synthetic_small.pth, trained from scratch on CPU
# (`make train-small`; README "Compact model"). From an empty folder: renders the training and validation
# scenes (build/synthetic_train, build/synthetic_val; complete scenes are kept on a re-run), trains with the
# project's own `torchrun launch.py --mode=train` (2 processes, Gloo, fixed seed; an interrupted run resumes
# from build/train_small/checkpoint-last.pth), then exports the final weights (fp16, weights_only-loadable).
# Loss curve: build/train_small/log_iters.jsonl (one line per iteration) and log.txt (one per epoch).
# Environment overrides: PY (python), OUT (run folder), EPOCHS, DEVICE (cpu or cuda), NPROC.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-build/train_small}
EPOCHS=${EPOCHS:-24}
DEVICE=${DEVICE:-cpu}
NPROC=${NPROC:-2}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

MODEL="$($PY -c 'from monst3r.model_zoo import COMPACT_MODEL_STRING as s; print(s)')"
TRAIN="1440 @ SyntheticDUSt3R(dataset_location='build/synthetic_train', strides=[1,2,3,5,7,9], resolution=[(224, 224)], transform=ColorJitter, aug_crop=16)"
TEST="64 @ SyntheticDUSt3R(dataset_location='build/synthetic_val', strides=[1,5,9], resolution=[(224, 224)], seed=777)"

# 1. scenes: 240 training seeds (1000..1239), 4 validation seeds (9100..9103); 24 frames of 400x225 each
$PY -m monst3r.datasets.synthetic.collection --out build/synthetic_train --seeds 1000:1240 --frames 24 --size 400x225
$PY -m monst3r.datasets.synthetic.collection --out build/synthetic_val --seeds 9100:9104 --frames 24 --size 400x225

# 2. training: 24 epochs x 90 iterations x 16 pairs (8 per process, symmetrised to 16), AdamW, lr 5e-4 cosine
$PY -m torch.distributed.run --nproc_per_node="$NPROC" --master_port="${MASTER_PORT:-29531}" launch.py --mode=train \
  --model="$MODEL" --train_dataset="$TRAIN" --test_dataset="$TEST" \
  --train_criterion="ConfLoss(Regr3D(L21, norm_mode='avg_dis'), alpha=0.2)" \
  --test_criterion="Regr3D_ScaleShiftInv(L21, gt_scale=True)" \
  --lr=5e-4 --min_lr=1e-6 --warmup_epochs=2 --weight_decay=0.05 --epochs="$EPOCHS" --batch_size=8 \
  --num_workers=1 --device="$DEVICE" --seed=0 --eval_freq=4 --keep_freq=8 --print_freq=30 --num_save_visual=0 \
  --output_dir="$OUT"

# 3. export: the final weights in half precision with the model string (about 7 MiB)
$PY -m monst3r.model_zoo export "$OUT/checkpoint-final.pth" checkpoints/monst3r_synthetic_small.pth
