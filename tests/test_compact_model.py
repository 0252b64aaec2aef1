"""The compact model trained here (checkpoints/monst3r_synthetic_small.pth) and the synthetic benchmark.

* the shipped file: small, loads with ``weights_only=True`` into the same class through ``load_model``;
* the whole pipeline with a network that predicts geometry: the demo (its default settings, ``--image_size
  224``, no flow network in the tests) on a held-out synthetic sequence reaches the model card's quality bounds:
  ATE at most half of the trivial baseline and of the same model untrained, Abs Rel <= 0.2, delta<1.25 >= 0.7;
* ``launch.py --mode=eval_pose --eval_dataset=synthetic`` (sequences generated on first use) and the video-depth
  evaluation on its output;
* the pieces of the recipe: the scene collection writer and the export.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from monst3r.eval.synthetic import EVAL_FOV_DEG, EVAL_SIZE, score_result, trivial_ate, write_eval_scene
from monst3r.model_zoo import COMPACT_IMAGE_SIZE, COMPACT_MODEL_STRING, COMPACT_WEIGHTS, export_compact

REPO = Path(__file__).resolve().parents[1]
#: Held-out seed of the quality test (training used 1000..1239; the benchmark 9001..9005; make demo 0).
QUALITY_SEED = 9001


def _env():
    return dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"))


def _demo(frames: Path, weights: Path, out: Path, name: str, *extra: str) -> Path:
    cmd = [sys.executable, str(REPO / "demo.py"), "--input", str(frames), "--weights", str(weights),
           "--image_size", str(COMPACT_IMAGE_SIZE), "--flow_loss_weight", "0", "--output_dir", str(out),
           "--seq_name", name, "--device", "cpu", "--silent", *extra]
    res = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    return out / name


def test_shipped_checkpoint_is_small_and_loads_weights_only():
    assert COMPACT_WEIGHTS.is_file(), f"{COMPACT_WEIGHTS} missing: run make train-small"
    assert COMPACT_WEIGHTS.stat().st_size <= 8 * 2**20
    ckpt = torch.load(COMPACT_WEIGHTS, map_location="cpu", weights_only=True)
    assert set(ckpt) == {"model", "args"} and ckpt["args"]["model"] == COMPACT_MODEL_STRING
    from monst3r.model import AsymmetricCroCo3DStereo, load_model

    model = load_model(COMPACT_WEIGHTS, device="cpu", verbose=False)
    assert type(model) is AsymmetricCroCo3DStereo and not model.training
    assert all(p.dtype == torch.float32 for p in model.parameters())
    sd = model.state_dict()
    assert all(torch.equal(sd[k], v.float()) for k, v in ckpt["model"].items())


@pytest.fixture(scope="module")
def held_out(tmp_path_factory):
    return write_eval_scene(tmp_path_factory.mktemp("heldout") / f"scene{QUALITY_SEED}", QUALITY_SEED)


@pytest.mark.slow
def test_demo_with_the_compact_model_reaches_the_quality_bounds(held_out, tmp_path):
    score = score_result(_demo(held_out, COMPACT_WEIGHTS, tmp_path, "trained"), held_out)
    # the same network untrained (seeded random initialisation), same settings
    torch.manual_seed(0)
    from monst3r.model import model_from_string

    untrained = tmp_path / "untrained.pth"
    torch.save({"model": model_from_string(COMPACT_MODEL_STRING).state_dict(),
                "args": {"model": COMPACT_MODEL_STRING}}, untrained)
    base = score_result(_demo(held_out, untrained, tmp_path, "untrained"), held_out)
    report = f"trained: {score}\nuntrained: {base}"
    assert score.trivial_ate == pytest.approx(trivial_ate(np.load(held_out / "poses.npy")))
    assert score.ate <= 0.5 * score.trivial_ate, report
    assert score.ate <= 0.5 * base.ate, report
    assert score.abs_rel <= 0.2, report
    assert score.delta_1_25 >= 0.7, report


@pytest.mark.slow
def test_eval_pose_and_video_depth_on_the_synthetic_benchmark(tmp_path):
    out = tmp_path / "results"
    cmd = [sys.executable, str(REPO / "launch.py"), "--mode=eval_pose", "--eval_dataset=synthetic",
           f"--pretrained={COMPACT_WEIGHTS}", "--eval_image_size=224", "--flow_loss_weight=0", "--n_iter=60",
           "--eval_max_seqs=1", f"--eval_data_root={tmp_path}", f"--output_dir={out}", "--device=cpu", "--silent"]
    res = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    # the five held-out sequences were generated under the data root, 224x224 with the training crops' camera
    seqs = sorted(p.name for p in (tmp_path / "data" / "synthetic_eval").iterdir())
    assert seqs == ["scene9001", "scene9002", "scene9003", "scene9004", "scene9005"]
    meta = json.loads((tmp_path / "data" / "synthetic_eval" / "scene9001" / "meta.json").read_text())
    assert (meta["width"], meta["height"]) == (EVAL_SIZE, EVAL_SIZE) and meta["fov_deg"] == pytest.approx(EVAL_FOV_DEG)
    text = res.stdout + res.stderr
    assert "ATE" in text or "ate" in text.lower()
    assert len(list((out / "scene9001").glob("frame_*.npy"))) == 24
    vd = subprocess.run([sys.executable, "-m", "monst3r.eval.video_depth", "--eval_dataset", "synthetic",
                         "--pred_dir", str(out), "--eval_data_root", str(tmp_path)], cwd=REPO, env=_env(),
                        capture_output=True, text=True, timeout=300)
    assert vd.returncode == 0, vd.stdout[-2000:] + vd.stderr[-2000:]
    assert "Abs Rel" in vd.stdout


def test_collection_writer_resumes_and_export_round_trips(tmp_path):
    from monst3r.datasets.synthetic.collection import parse_seeds, write_collection

    assert parse_seeds("3:6") == [3, 4, 5] and parse_seeds("7,9") == [7, 9]
    root = write_collection(tmp_path / "scenes", [3, 4], num_frames=2, size=(64, 48), workers=1, log=None)
    assert sorted(p.name for p in root.iterdir()) == ["scene3", "scene4"]
    stamp = (root / "scene3" / "meta.json").stat().st_mtime_ns
    write_collection(root, [3, 4, 5], num_frames=2, size=(64, 48), workers=1, log=None)
    assert (root / "scene3" / "meta.json").stat().st_mtime_ns == stamp  # complete scenes are kept
    assert (root / "scene5" / "poses.npy").is_file()
    # `make demo`'s input: a folder holding another scene (e.g. the older 512x288 demo input) is replaced, the
    # right one is kept
    write_eval_scene(root / "scene3", 3, frames=2)
    meta = json.loads((root / "scene3" / "meta.json").read_text())
    assert (meta["width"], meta["height"], meta["seed"]) == (EVAL_SIZE, EVAL_SIZE, 3)
    stamp = (root / "scene3" / "meta.json").stat().st_mtime_ns
    write_eval_scene(root / "scene3", 3, frames=2)
    assert (root / "scene3" / "meta.json").stat().st_mtime_ns == stamp

    from monst3r.model import load_model, model_from_string

    tiny = ("AsymmetricCroCo3DStereo(pos_embed='RoPE100', img_size=(64, 64), head_type='linear', "
            "output_mode='pts3d', depth_mode=('exp', -inf, inf), conf_mode=('exp', 1, inf), enc_embed_dim=64, "
            "enc_depth=1, enc_num_heads=2, dec_embed_dim=32, dec_depth=1, dec_num_heads=2)")
    torch.manual_seed(0)
    net = model_from_string(tiny, for_inference=False)
    src = tmp_path / "checkpoint-final.pth"
    import argparse

    torch.save({"model": net.state_dict(), "args": argparse.Namespace(model=tiny), "epoch": 3}, src)
    dst = export_compact(src, tmp_path / "out" / "small.pth")
    ckpt = torch.load(dst, map_location="cpu", weights_only=True)
    assert ckpt["args"] == {"model": tiny}
    assert all(v.dtype == torch.float16 for v in ckpt["model"].values() if v.is_floating_point())
    loaded = load_model(dst, verbose=False)
    for k, v in net.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[k], v.half().float())
    assert not [p for p in dst.parent.iterdir() if p.name.startswith(".")]  # no temporary left


@pytest.mark.slow
@pytest.mark.dist
def test_training_recipe_runs_end_to_end_in_miniature(tmp_path):
    """``recipes/train_small.sh`` (what ``make train-small`` runs) with tiny sizes: scenes, 2-process torchrun
    training with the compact model, export. The full recipe runs outside the suite (about 80 minutes)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(_env(), PY=sys.executable, OUT=str(tmp_path / "run"), DATA=str(tmp_path / "data"), EPOCHS="1",
               PAIRS="4", BATCH="1", TRAIN_SEEDS="1000:1002", VAL_SEEDS="9100:9101", FRAMES="12",
               EXPORT=str(tmp_path / "small.pth"), MASTER_PORT=str(port), OMP_NUM_THREADS="1")
    res = subprocess.run(["bash", str(REPO / "recipes" / "train_small.sh")], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    rows = [json.loads(line) for line in (tmp_path / "run" / "log_iters.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(np.isfinite(r["loss"]) for r in rows)  # 4 pairs / (1 pair x 2 processes)
    assert sorted(p.name for p in (tmp_path / "data" / "synthetic_train").iterdir()) == ["scene1000", "scene1001"]
    ckpt = torch.load(tmp_path / "small.pth", map_location="cpu", weights_only=True)
    assert ckpt["args"] == {"model": COMPACT_MODEL_STRING}
