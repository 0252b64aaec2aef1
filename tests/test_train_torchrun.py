"""End-to-end training: ``torchrun --nproc_per_node=2 launch.py --mode=train`` on CPU (Gloo) with a tiny model on
synthetic data — the loss falls, checkpoints are written (atomically, loadable with weights_only=True), and a run
stopped after 2 epochs then resumed reproduces the uninterrupted run's loss sequence exactly."""
import argparse
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = [pytest.mark.dist, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
TINY_MODEL = ("AsymmetricCroCo3DStereo(pos_embed='RoPE100', img_size=(64, 64), head_type='linear', "
              "output_mode='pts3d', depth_mode=('exp', -inf, inf), conf_mode=('exp', 1, inf), enc_embed_dim=64, "
              "enc_depth=2, enc_num_heads=2, dec_embed_dim=64, dec_depth=2, dec_num_heads=2)")
TRAIN = ("32 @ SyntheticDUSt3R(num_scenes=2, num_frames=6, width=64, height=48, strides=[1,2], "
         "resolution=[(64, 48)], transform=ColorJitter, aug_crop=4, aug_focal=0.9)")
TEST = ("8 @ SyntheticDUSt3R(num_scenes=1, num_frames=6, width=64, height=48, strides=[1], resolution=[(64, 48)], "
        "seed=7, scene_seed=50)")
CKPT_KEYS = {"model", "optimizer", "epoch", "args", "scaler", "best_so_far", "best_pose_ate_sofar"}


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _args(out, *extra):
    return ["--mode=train", f"--model={TINY_MODEL}", f"--train_dataset={TRAIN}", f"--test_dataset={TEST}",
            "--test_criterion=Regr3D_ScaleShiftInv(L21, gt_scale=True)", "--lr=1e-3", "--warmup_epochs=1",
            "--epochs=4", "--batch_size=2", "--num_workers=0", "--device=cpu", "--silent", "--num_save_visual=0",
            "--keep_freq=2", f"--output_dir={out}", *extra]


def _torchrun(out, *extra):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={_free_port()}",
           str(REPO / "launch.py"), *_args(out, *extra)]
    res = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res


def _losses(out):
    return [json.loads(line) for line in (Path(out) / "log_iters.jsonl").read_text().splitlines()]


def _load(path):
    with torch.serialization.safe_globals([argparse.Namespace]):
        return torch.load(path, map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("full")
    _torchrun(out)
    return out


def test_two_process_training_learns_and_writes_checkpoints(full_run):
    rows = _losses(full_run)
    assert len(rows) == 4 * 8  # 4 epochs x (32 pairs / (2 pairs x 2 processes))
    losses = [r["loss"] for r in rows]
    first, last = sum(losses[:8]) / 8, sum(losses[-8:]) / 8
    assert last < 0.7 * first, (first, last)
    assert rows[0]["lr"] == 0.0 and max(r["lr"] for r in rows) <= 1e-3
    names = sorted(p.name for p in full_run.glob("checkpoint-*.pth"))
    assert names == ["checkpoint-2.pth", "checkpoint-4.pth", "checkpoint-best.pth", "checkpoint-final.pth",
                     "checkpoint-last.pth"]
    assert not list(full_run.glob(".checkpoint-*"))  # no temporary files left behind
    last_ck = _load(full_run / "checkpoint-last.pth")
    assert set(last_ck) == CKPT_KEYS
    assert isinstance(last_ck["args"], argparse.Namespace) and last_ck["args"].model == TINY_MODEL
    assert last_ck["epoch"] == 3  # written at loop index 4: stores the last COMPLETED epoch
    assert _load(full_run / "checkpoint-4.pth")["epoch"] == 3
    final = _load(full_run / "checkpoint-final.pth")
    assert set(final) == {"args", "model", "epoch", "best_so_far"} and final["epoch"] == 4
    log = [json.loads(line) for line in (full_run / "log.txt").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [0, 1, 2, 3, 4]
    assert "8 @ SyntheticDUSt3R_stride[1]_loss_med" in log[-1] and "train_loss" in log[-1]
    from monst3r.model import load_model

    model = load_model(full_run / "checkpoint-final.pth", for_inference=False)
    assert sum(p.numel() for p in model.parameters()) > 0


def test_stop_and_resume_reproduces_the_loss_sequence(full_run, tmp_path):
    out = tmp_path / "resumed"
    _torchrun(out, "--stop_after_epochs=2")
    assert len(_losses(out)) == 16 and not (out / "checkpoint-final.pth").exists()
    assert _load(out / "checkpoint-last.pth")["epoch"] == 1
    _torchrun(out)  # auto-resume from checkpoint-last.pth
    assert _losses(out) == _losses(full_run)


def test_single_process_pretrained_eval_only_and_errors(full_run, tmp_path, capsys):
    import launch

    out = tmp_path / "single"
    # initialise from the 2-process run's final weights, evaluate once and stop
    rc = launch.main(_args(out, f"--pretrained={full_run / 'checkpoint-final.pth'}", "--eval_only",
                           "--num_save_visual=1"))
    assert rc == 0
    assert sorted(p.name.rsplit("_", 1)[1] for p in (out / "0").glob("*.glb")) == ["gt.glb", "pred.glb"]
    log = [json.loads(line) for line in (out / "log.txt").read_text().splitlines()]
    assert len(log) == 1 and log[0]["8 @ SyntheticDUSt3R_stride[1]_loss_med"] > 0
    assert not list(out.glob("checkpoint-*.pth"))
    # missing dataset folder: one line naming the preparation script, exit status 2
    rc = launch.main(_args(tmp_path / "bad", "--train_dataset=100 @ TarTanAirDUSt3R(dataset_location="
                           f"'{tmp_path / 'nowhere'}', resolution=[(64, 48)])"))
    err = capsys.readouterr().err
    assert rc == 2 and "data/prepare_tartanair.sh" in err
    # malformed expression: names the offending part
    rc = launch.main(_args(tmp_path / "bad2", "--train_dataset=100 @ TarTanAir(dset='Hard')"))
    err = capsys.readouterr().err
    assert rc == 2 and "'TarTanAir'" in err
    # a pretrained checkpoint for another configuration is refused with the key names
    rc = launch.main(_args(tmp_path / "bad3", f"--pretrained={full_run / 'checkpoint-final.pth'}",
                           "--model=" + TINY_MODEL.replace("dec_depth=2", "dec_depth=3")))
    assert rc == 2 and "dec_blocks.2" in capsys.readouterr().err


def test_eval_modes_dispatch(monkeypatch, capsys):
    import types

    import launch

    monkeypatch.setitem(sys.modules, "monst3r.eval.depth", None)
    assert launch.main(["--mode=eval_depth"]) == 2
    assert "monst3r.eval.depth" in capsys.readouterr().err
    seen = {}
    fake = types.ModuleType("monst3r.eval.depth")
    fake.main = lambda args: seen.setdefault("args", args) and 0
    monkeypatch.setitem(sys.modules, "monst3r.eval.depth", fake)
    assert launch.main(["--mode=eval_depth", "--eval_dataset=nyu", "--no_crop"]) == 0
    assert seen["args"].eval_dataset == "nyu" and seen["args"].no_crop
