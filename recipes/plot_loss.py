"""Plot the loss curve of a training run: ``python recipes/plot_loss.py build/train_small docs/compact_model_loss.png``.

Reads ``log_iters.jsonl`` (one line per iteration: epoch, step, loss, lr) and ``log.txt`` (one line per epoch, with
the test losses), writes a PNG (training loss per iteration and its running mean over one epoch, the held-out test
loss per evaluated epoch) and prints the per-epoch table.
"""
import json
import sys
from pathlib import Path

import numpy as np


def main(run: str, out: str) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in (Path(run) / "log_iters.jsonl").read_text().splitlines()]
    epochs = [json.loads(line) for line in (Path(run) / "log.txt").read_text().splitlines()]
    loss = np.array([r["loss"] for r in rows])
    per_epoch = max(1, sum(1 for r in rows if r["epoch"] == rows[0]["epoch"]))
    x = np.arange(len(loss)) / per_epoch
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.6))
    ax[0].plot(x, loss, lw=0.4, alpha=0.5, label="train loss (ConfLoss, per iteration)")
    smooth = np.convolve(loss, np.ones(per_epoch) / per_epoch, mode="valid")
    ax[0].plot(x[per_epoch - 1:], smooth, lw=1.5, label="running mean (1 epoch)")
    ax[0].set_xlabel("epoch")
    ax[0].set_yscale("symlog", linthresh=0.1)
    ax[0].legend(fontsize=8)
    # the epoch log repeats the last test result until the next evaluation: keep each evaluation once
    test, last = [], None
    for e in epochs:
        v = next((v for k, v in e.items() if k.endswith("_loss_med")), None)
        if v is not None and v != last:
            test.append((e["epoch"], v))
        last = v
    if test:
        ax[1].plot(*zip(*test), "o-", label="held-out scenes: median Regr3D_ScaleShiftInv")
        ax[1].set_xlabel("epoch")
        ax[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print("epoch  train_loss  test_loss_med")
    test_by_epoch = dict(test)
    for e in epochs:
        if "train_loss" in e:
            print(f"{e['epoch']:5d}  {e['train_loss']:10.4f}  {test_by_epoch.get(e['epoch'], float('nan')):13.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
