"""Video-depth evaluation: the notebook cells as a command (against the golden notebook outputs) and end to end
after ``--mode=eval_pose --no_crop`` on synthetic Sintel / Bonn layouts."""
import json
import math

import numpy as np
import pytest
import torch

from monst3r.errors import Monst3rInputError
from monst3r.eval import pose, video_depth
from monst3r.eval.depth_io import read_dpt, read_png_depth, write_dpt, write_png_depth
from monst3r.eval.metrics import DEPTH_METRIC_KEYS
from synthetic_fixtures import IdealPairModel, write_bonn_fixture, write_sintel_fixture
from test_eval_pose import FAST, parse_launch_args, tiny_model

SIZE = dict(width=64, height=48)


def _frames(z, prefix):
    keys = sorted((k for k in z.files if k.startswith(prefix)), key=lambda k: int(k.rsplit("_", 1)[1]))
    return [z[k] for k in keys]


def _seqs(z, dataset):
    return sorted({k.split("__")[1] for k in z.files if k.startswith(dataset + "__")})


@pytest.fixture(scope="module")
def notebook_tree(tmp_path_factory, golden):
    """The golden notebook inputs written in the on-disk layouts; Bonn predictions named like pose-eval output."""
    import cv2

    base = golden("eval", "depth")
    z = np.load(base / "notebook_inputs.npz")
    ref = json.loads((base / "notebook_results.json").read_text(encoding="utf-8"))
    root = tmp_path_factory.mktemp("notebook")

    def mk(path):
        path = root / path
        path.mkdir(parents=True, exist_ok=True)
        return path

    for s in _seqs(z, "sintel"):
        gt, pred = mk(f"data/sintel/training/depth/{s}"), mk(f"results/sintel_video_depth/{s}")
        for k, a in enumerate(_frames(z, f"sintel__{s}__gt_")):
            write_dpt(gt / f"frame_{k + 1:04d}.dpt", a)
        for k, a in enumerate(_frames(z, f"sintel__{s}__pred_")):
            np.save(pred / f"frame_{k:04d}.npy", a)
    for s in _seqs(z, "bonn"):
        gt, pred = mk(f"data/bonn/rgbd_bonn_dataset/rgbd_bonn_{s}/depth_110"), mk(f"results/bonn_video_depth/{s}")
        for k, a in enumerate(_frames(z, f"bonn__{s}__gt_png_")):
            cv2.imwrite(str(gt / ("%010.6f.png" % (1548266469.0 + 0.03 * k))), a)
        for k, a in enumerate(_frames(z, f"bonn__{s}__pred_")):
            np.save(pred / f"frame_{k:04d}.npy", a)
    for s in _seqs(z, "kitti"):
        gt = mk(f"data/kitti/depth_selection/val_selection_cropped/groundtruth_depth_gathered/{s}")
        pred = mk(f"results/kitti_video_depth/{s}")
        for k, a in enumerate(_frames(z, f"kitti__{s}__gt_png_")):
            cv2.imwrite(str(gt / ("%010d.png" % (5 + k))), a)
        for k, a in enumerate(_frames(z, f"kitti__{s}__pred_")):
            np.save(pred / f"frame_{k:04d}.npy", a)
    gt, pred = mk("data/nyu-v2/val/nyu_depths"), mk("results/nyuv2_depth")
    for k, a in enumerate(_frames(z, "nyu__gt_")):
        np.save(gt / f"{k:05d}.npy", a)
    for k, a in enumerate(_frames(z, "nyu__pred_")):
        np.save(pred / f"{k:05d}depth.npy", a)
    return root, ref


def _close(ours: dict, ref: dict, tol: float = 1e-6) -> None:
    for key in DEPTH_METRIC_KEYS:
        assert abs(ours[key] - ref[key]) <= tol * max(abs(ref[key]), 1e-12), (key, ours[key], ref[key])


@pytest.mark.parametrize("dataset,run", [("sintel", "sintel"), ("bonn", "bonn_renamed_pred_dirs"),
                                         ("kitti", "kitti"), ("nyu", "nyu")])
def test_command_matches_golden_notebook(notebook_tree, dataset, run, tmp_path, capsys):
    root, ref = notebook_tree
    out = tmp_path / "metrics.json"
    assert video_depth.main(["--eval_dataset", dataset, "--eval_data_root", str(root), "--output", str(out)]) == 0
    saved = json.loads(out.read_text(encoding="utf-8"))
    _close(saved["average"], ref[run]["average"])
    assert len(saved["per_sequence"]) == len(ref[run]["per_seq"]) and not saved["skipped"]
    for ours, gold in zip(saved["per_sequence"].values(), ref[run]["per_seq"]):
        _close(ours, gold)
        assert ours["valid_pixels"] == gold["valid_pixels"]
    assert "average (pixel-weighted)" in capsys.readouterr().out
    # the original Bonn cell crashed on the pose-eval folder names (balloon2); ours maps rgbd_bonn_<seq> <-> <seq>
    if dataset == "bonn":
        assert ref["bonn_as_documented"]["error"].startswith("ValueError")


def test_alignment_and_cap_options(notebook_tree):
    root, _ = notebook_tree
    assert video_depth.depth_kwargs("sintel") == dict(max_depth=70, align_with_lad2=True, post_clip_max=70)
    assert video_depth.depth_kwargs("sintel", align="median", max_depth=None, post_clip_max=None) == \
        dict(max_depth=None)
    assert video_depth.depth_kwargs("nyu", align="lstsq") == dict(max_depth=None, lr=1e-3, align_with_lstsq=True)
    results = {a: video_depth.evaluate_dataset("kitti", root=str(root), align=a) for a in ("median", "lstsq", "lad2")}
    assert results["lstsq"].average["Abs Rel"] != results["median"].average["Abs Rel"]
    capped = video_depth.evaluate_dataset("kitti", root=str(root), max_depth=20.0)
    assert sum(m["valid_pixels"] for m in capped.per_seq.values()) < \
        sum(m["valid_pixels"] for m in results["lad2"].per_seq.values())
    with pytest.raises(Monst3rInputError, match="unknown alignment"):
        video_depth.depth_kwargs("bonn", align="ransac")


def test_mismatched_sequence_is_left_out_and_missing_folder_is_clear(notebook_tree, tmp_path):
    root, _ = notebook_tree
    pred = tmp_path / "pred"
    for src in (root / "results/kitti_video_depth").iterdir():
        if src.is_dir():
            (pred / src.name).mkdir(parents=True)
            for f in sorted(src.glob("*.npy")):
                (pred / src.name / f.name).write_bytes(f.read_bytes())
    first = sorted(pred.iterdir())[0]
    sorted(first.glob("*.npy"))[-1].unlink()
    res = video_depth.evaluate_dataset("kitti", pred_dir=str(pred), root=str(root))
    assert list(res.skipped) == [first.name] and "predicted vs" in res.skipped[first.name]
    assert len(res.per_seq) == 1
    with pytest.raises(Monst3rInputError, match="run the pose evaluation"):
        video_depth.evaluate_dataset("kitti", pred_dir=str(tmp_path / "nothing"), root=str(root))
    assert video_depth.main(["--eval_dataset", "bonn", "--eval_data_root", str(tmp_path)]) == 2


def test_depth_file_formats(tmp_path):
    d = np.random.default_rng(0).uniform(0.5, 9, (5, 7)).astype(np.float32)
    write_dpt(tmp_path / "a.dpt", d)
    np.testing.assert_array_equal(read_dpt(tmp_path / "a.dpt"), d)
    d[0, 0] = 0
    write_png_depth(tmp_path / "a.png", d, 5000.0)
    back = read_png_depth(tmp_path / "a.png", 5000.0)
    assert back[0, 0] == -1 and np.abs(back[1:] - d[1:]).max() <= 0.5 / 5000 + 1e-9


# ------------------------------------------------------------------------------------------------ end to end


@pytest.fixture(scope="module")
def video_sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("videosets")
    index = write_sintel_fixture(root, {"ambush_4": dict(SIZE, num_frames=6, seed=11),
                                        "temple_2": dict(SIZE, num_frames=5, seed=12)}, masks=False)
    index.update(write_bonn_fixture(root, {"balloon2": dict(SIZE, num_frames=6, seed=13)}))
    return root, index


def _pose_then_depth(root, out, dataset, model, extra=()):
    args = parse_launch_args(["--mode=eval_pose", f"--eval_dataset={dataset}", f"--output_dir={out}",
                              f"--eval_data_root={root}", "--no_crop", *FAST, "--pose_eval_stride", "1",
                              *extra])
    if dataset == "sintel":
        args.full_seq = True  # as the documented Sintel video-depth command
    else:
        args.seq_list = ["balloon2"]  # the fixture holds one of the five Bonn sequences
    summary = pose.main(args, model=model)
    return summary, video_depth.evaluate_dataset(dataset, pred_dir=str(out), root=str(root))


@pytest.mark.parametrize("dataset", ["sintel", "bonn"])
def test_video_depth_after_pose_eval_ideal_network(video_sets, tmp_path, dataset):
    root, index = video_sets
    summary, res = _pose_then_depth(root, tmp_path, dataset, IdealPairModel(index))
    assert all(r.status == "ok" and r.ate < 0.02 for r in summary.records), summary.records
    assert len(res.per_seq) == len(summary.records) and not res.skipped
    avg = res.average
    assert avg["Abs Rel"] < 0.01 and avg["δ < 1.25"] > 0.999, avg
    if dataset == "bonn":  # 16-bit PNG GT (1/5000 m steps); predictions folder 'balloon2' matched
        assert list(res.per_seq) == ["balloon2"]


def test_video_depth_after_pose_eval_tiny_model(video_sets, tmp_path, golden):
    root, _ = video_sets
    torch.manual_seed(0)
    summary, res = _pose_then_depth(root, tmp_path, "sintel", tiny_model(golden))
    assert [r.status for r in summary.records] == ["ok", "ok"]
    assert all(math.isfinite(v) for v in res.average.values()), res.average
    assert all(m["valid_pixels"] == 5 * 48 * 64 or m["valid_pixels"] == 6 * 48 * 64 for m in res.per_seq.values())
