"""Pose evaluation end to end on synthetic data sets in the Sintel and TUM-dynamics layouts.

The network is either an ideal one (exact pairwise pointmaps from the generator: the pipeline, not the network,
is under test, so the ATE must be ~0) or the tiny random golden model (the run must complete with finite numbers).
"""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from monst3r.errors import Monst3rInputError
from monst3r.eval import pose
from monst3r.eval.args import add_eval_arguments, build_eval_parser
from monst3r.eval.metadata import EVAL_DATASETS, get_dataset, list_sequences
from monst3r.eval.metrics import average_metric_files, parse_metric_text, pose_metrics
from monst3r.eval.pose import adapt_scene_graph
from monst3r.runtime import split_for_rank
from server_helpers import free_port
from synthetic_fixtures import IdealPairModel, write_sintel_fixture, write_tum_fixture
from monst3r.eval.trajectory import load_pred_traj, load_traj

REPO = Path(__file__).resolve().parents[1]
SIZE = dict(width=64, height=48)
# tiny frames, every 2nd frame (more camera motion per frame; exercises the GT striding), few iterations, no flow
FAST = ["--eval_image_size", "64", "--pose_eval_stride", "2", "--n_iter", "100", "--flow_loss_weight", "0",
        "--device", "cpu", "--silent"]


def parse_launch_args(argv):
    """The arguments exactly as ``launch.py`` parses them (plus the evaluation additions)."""
    try:
        import launch

        parser = launch.build_parser()
    except ImportError:  # launch.py not in this checkout: the stand-alone evaluation parser
        parser = build_eval_parser()
    return add_eval_arguments(parser).parse_args(argv)


def tiny_model_string(golden) -> str:
    return json.loads(golden("model", "tiny_linear_manifest.json").read_text())["model_string"]


def tiny_model(golden):
    from monst3r.model import model_from_string

    torch.manual_seed(0)
    return model_from_string(tiny_model_string(golden), for_inference=True).eval()


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    """Sintel: 2 good sequences + 1 with an unreadable frame; TUM: 1 good + 1 with a static (degenerate) GT."""
    root = tmp_path_factory.mktemp("evalsets")
    index = write_sintel_fixture(root, {"alley_2": dict(SIZE, num_frames=16, seed=1),
                                        "cave_2": dict(SIZE, num_frames=12, seed=2),
                                        "market_2": dict(SIZE, num_frames=6, seed=5)})
    (root / "data/sintel/training/final/market_2/frame_0003.png").write_bytes(b"not a png")
    index.update(write_tum_fixture(root, {"seq_a": dict(SIZE, num_frames=16, seed=3),
                                          "seq_static": dict(SIZE, num_frames=12, seed=4, static_camera=True)},
                                   static_gt=("seq_static",)))
    return root, index


def scene_of(index, seq):
    return next(v[0] for k, v in index.items() if f"/{seq}/" in k)


def motion_rms(scene, stride: int = 2) -> float:
    """RMS distance of the (strided) camera centres from their mean: the scale the ATE is compared with."""
    p = scene.poses[::stride, :3, 3]
    return float(np.sqrt(((p - p.mean(0)) ** 2).sum(1).mean()))


@pytest.fixture(scope="module")
def sintel_run(data_root, tmp_path_factory):
    root, index = data_root
    out = tmp_path_factory.mktemp("sintel_pose")
    args = parse_launch_args(["--mode=eval_pose", "--eval_dataset=sintel", f"--output_dir={out}",
                              f"--eval_data_root={root}", "--seq_list", "alley_2", "cave_2", "market_2", *FAST])
    summary = pose.main(args, model=IdealPairModel(index))
    return out, summary, root, index


# ------------------------------------------------------------------------------------------------ helpers


def test_adapt_scene_graph_and_split():
    assert adapt_scene_graph("swinstride-5-noncyclic", 65) == "swinstride-5-noncyclic"
    assert adapt_scene_graph("swinstride-5-noncyclic", 8) == "swinstride-4-noncyclic"  # original: cyclic (bug)
    assert adapt_scene_graph("swin-5", 3) == "swin-1"
    assert adapt_scene_graph("complete", 4) == "complete"
    assert adapt_scene_graph("swinstride-5-noncyclic", 96, "davis") == "swinstride-4-noncyclic"
    assert adapt_scene_graph("swinstride-5-noncyclic", 95, "davis") == "swinstride-5-noncyclic"
    seqs = [f"s{k}" for k in range(5)]
    assert [split_for_rank(seqs, r, 2) for r in range(2)] == [seqs[:3], seqs[3:]]
    assert [split_for_rank(seqs, r, 4) for r in range(4)] == [seqs[:2], seqs[2:4], seqs[4:], []]


def test_metadata_layouts_and_errors(tmp_path):
    assert set(EVAL_DATASETS) == {"davis", "kitti", "bonn", "scannet", "tum", "nyu", "sintel", "synthetic"}
    sintel = get_dataset("sintel")
    assert len(sintel.sequences) == 14 and sintel.sintel_flow and sintel.traj_format == "sintel"
    assert str(get_dataset("bonn").sequence_dir(".", "balloon2")).endswith("rgbd_bonn_balloon2/rgb_110")
    assert str(get_dataset("tum").gt_traj_path("r", "s")) == "r/data/tum/s/groundtruth_90.txt"
    assert get_dataset("scannet").skip_existing and get_dataset("scannet").traj_format == "replica"
    assert get_dataset("davis").gt_traj is None and get_dataset("kitti").gt_traj is None
    with pytest.raises(Monst3rInputError, match="download_sintel.sh"):
        list_sequences(sintel, tmp_path)
    with pytest.raises(Monst3rInputError, match="prepare_eval_tum.py"):
        (tmp_path / "data/tum/rgbd_x").mkdir(parents=True)
        list_sequences(get_dataset("tum"), tmp_path)
    with pytest.raises(Monst3rInputError, match="unknown evaluation dataset"):
        get_dataset("eth3d")
    bonn = tmp_path / "data/bonn/rgbd_bonn_dataset/rgbd_bonn_crowd2/rgb_110"
    bonn.mkdir(parents=True)
    assert list_sequences(get_dataset("bonn"), tmp_path, full_seq=True) == ["crowd2"]


def test_arguments_cover_the_original():
    original = {"eval_dataset": "sintel", "output_dir": "./results/tmp", "pose_eval_stride": 1,
                "scene_graph_type": "swinstride-5-noncyclic", "n_iter": 300, "pose_schedule": "linear",
                "temporal_smoothing_weight": 0.01, "translation_weight": 1, "flow_loss_weight": 0.01,
                "flow_loss_fn": "smooth_l1", "flow_loss_start_epoch": 0.1, "flow_loss_thre": 20,
                "pxl_thresh": 50.0, "motion_mask_thre": 0.35, "depth_regularize_weight": 0.0,
                "not_shared_focal": False, "use_gt_focal": False, "use_gt_mask": False, "sam2_mask_refine": False,
                "save_pose_qualitative": False, "silent": False, "full_seq": False, "seq_list": None,
                "no_crop": False, "seed": 0, "mode": "train"}
    for args in (build_eval_parser().parse_args([]), parse_launch_args([])):
        for key, value in original.items():
            assert getattr(args, key) == value, key
        assert args.eval_image_size == 512 and args.eval_data_root == "."


# ------------------------------------------------------------------------------------------------ ideal network


def test_sintel_ideal_network_gives_near_zero_ate(sintel_run, capsys):
    out, summary, root, index = sintel_run
    recs = summary.by_seq()
    for seq in ("alley_2", "cave_2"):
        assert recs[seq].status == "ok", recs[seq].message
        assert recs[seq].n_frames == scene_of(index, seq).num_frames // 2
        # the network is exact: what is left is the optimizer's (MST init is exact, Adam's steps are not)
        assert recs[seq].ate < min(0.003, 0.05 * motion_rms(scene_of(index, seq))), recs[seq]
        assert recs[seq].rpe_trans < 0.005 and recs[seq].rpe_rot < 0.1, recs[seq]
        assert (out / seq / "pred_traj.txt").is_file() and (out / seq / "frame_0000.npy").is_file()
        assert (out / seq / "pred_focal.txt").is_file() and (out / f"{seq}_eval_metric.txt").is_file()
    assert recs["market_2"].status == "failed" and "frame_0003.png" in recs["market_2"].message
    assert summary.coverage_line().startswith("averaged over 2 of 3 sequences (1 failed: market_2")
    assert not (out / "market_2_eval_metric.txt").exists()
    log = (out / "_error_log.txt").read_text()
    assert "sintel-alley_2          | ATE: " in log and "sintel-market_2         | FAILED" in log
    assert "Average ATE: " in log and "averaged over 2 of 3 sequences" in log


def test_printed_metrics_agree_with_metrics_module(sintel_run):
    """Recompute ATE/RPE from the written pred_traj.txt and the GT with monst3r.eval.metrics."""
    out, summary, root, _ = sintel_run
    for seq in ("alley_2", "cave_2"):
        rec = summary.by_seq()[seq]
        rows, _ = load_pred_traj(out / seq / "pred_traj.txt")
        gt_rows, gt_ts = load_traj(root / "data/sintel/training/camdata_left" / seq, "sintel", stride=2)
        ref = pose_metrics(rows, gt_rows, gt_timestamps=gt_ts)
        for ours, exact, theirs in ((rec.ate, rec.ate_exact, ref.ate), (rec.rpe_trans, rec.rpe_trans_exact,
                                                                       ref.rpe_trans),
                                    (rec.rpe_rot, rec.rpe_rot_exact, ref.rpe_rot_deg)):
            assert exact == pytest.approx(theirs, rel=1e-9, abs=1e-12)
            assert ours == float(f"{theirs:.6f}")
        parsed = parse_metric_text((out / f"{seq}_eval_metric.txt").read_text())
        assert (parsed["ate"], parsed["rpe_trans"], parsed["rpe_rot_deg"]) == (rec.ate, rec.rpe_trans, rec.rpe_rot)
    averages, records = average_metric_files(out)  # the original's aggregation of the same folder
    assert len(records) == 2
    ours = summary.averages
    assert (ours["ate"], ours["rpe_trans"], ours["rpe_rot"]) == pytest.approx(
        (averages["ate"], averages["rpe_trans"], averages["rpe_rot_deg"]), rel=1e-12)
    saved = json.loads((out / "_eval_summary.json").read_text())
    assert saved["n_evaluated"] == 2 and saved["n_sequences"] == 3 and saved["counts"]["failed"] == 1


def test_tum_degenerate_sequence_is_reported_and_counted(data_root, tmp_path, capsys):
    root, index = data_root
    (tmp_path / "stale_seq_eval_metric.txt").write_text("APE w.r.t. translation part (m)\n rmse 9.0\n")
    args = parse_launch_args(["--mode=eval_pose", "--eval_dataset=tum", f"--output_dir={tmp_path}",
                              f"--eval_data_root={root}", *FAST])
    summary = pose.main(args, model=IdealPairModel(index))
    printed = capsys.readouterr().out
    recs = summary.by_seq()
    assert list(recs) == ["seq_a", "seq_static"]  # full_seq: every folder of data/tum
    assert recs["seq_a"].status == "ok"
    assert recs["seq_a"].ate < min(0.003, 0.05 * motion_rms(scene_of(index, "seq_a"))), recs["seq_a"]
    assert recs["seq_static"].status == "degenerate" and "static" in recs["seq_static"].message
    assert (tmp_path / "seq_static" / "pred_traj.txt").is_file()  # reconstructed, only the metrics are missing
    assert not (tmp_path / "seq_static_eval_metric.txt").exists()
    assert f"ATE mean: {recs['seq_a'].ate}, RPE trans mean: {recs['seq_a'].rpe_trans}" in printed
    assert "tum: averaged over 1 of 2 sequences (1 degenerate: seq_static)" in printed
    assert summary.averages["ate"] == recs["seq_a"].ate  # the stale metric file is not averaged in


# ------------------------------------------------------------------------------------------------ tiny network


def test_tiny_random_model_completes_with_finite_numbers(data_root, tmp_path, golden):
    root, _ = data_root
    args = parse_launch_args(["--mode=eval_pose", "--eval_dataset=tum", f"--output_dir={tmp_path}",
                              f"--eval_data_root={root}", *FAST])
    summary = pose.main(args, model=tiny_model(golden))
    recs = summary.by_seq()
    assert recs["seq_a"].status == "ok", recs["seq_a"].message
    assert all(math.isfinite(getattr(recs["seq_a"], k)) for k in ("ate", "rpe_trans", "rpe_rot"))
    assert recs["seq_static"].status == "degenerate"
    depth = np.load(tmp_path / "seq_a" / "frame_0000.npy")
    assert depth.shape == (48, 64) and np.isfinite(depth).all()


@pytest.mark.slow
def test_launch_subprocess_with_tiny_model(data_root, tmp_path, golden):
    """``python launch.py --mode=eval_pose`` from the data root (the original's relative data/ paths)."""
    root, _ = data_root
    if not (REPO / "launch.py").is_file():
        pytest.skip("launch.py is not part of this checkout")
    import launch

    extra = ["--eval_image_size", "64"] if "--eval_image_size" in launch.build_parser()._option_string_actions \
        else []  # without the addition, frames are upsampled to 512 px (slower, same pipeline)
    cmd = [sys.executable, str(REPO / "launch.py"), "--mode=eval_pose", "--eval_dataset=tum",
           f"--output_dir={tmp_path / 'out'}", f"--model={tiny_model_string(golden)}", "--n_iter", "3",
           "--pose_eval_stride", "2",
           "--flow_loss_weight", "0", "--device", "cpu", "--silent",
           "--seq_list", "seq_a", *extra]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    res = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    line = [ln for ln in res.stdout.splitlines() if ln.startswith("ATE mean:")]
    assert line, res.stdout[-2000:]
    numbers = [float(x.split(":")[1]) for x in line[0].split(", ")]
    assert len(numbers) == 3 and all(math.isfinite(x) for x in numbers)
    assert "tum: averaged over 1 of 1 sequences" in res.stdout


@pytest.mark.dist
@pytest.mark.slow
def test_torchrun_splits_sequences_across_two_processes(data_root, tmp_path, golden):
    root, _ = data_root
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={free_port()}",
           "-m", "monst3r.eval.pose", "--eval_dataset=tum", f"--output_dir={tmp_path}", f"--eval_data_root={root}",
           f"--model={tiny_model_string(golden)}", *FAST]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, (res.stdout[-2000:], res.stderr[-4000:])
    assert res.stdout.count("ATE mean:") == 1  # printed by rank 0 only
    assert "tum: averaged over 1 of 2 sequences (1 degenerate: seq_static)" in res.stdout
    assert "seq_a" in (tmp_path / "_error_log_0.txt").read_text()
    assert "seq_static" in (tmp_path / "_error_log_1.txt").read_text()
    saved = json.loads((tmp_path / "_eval_summary.json").read_text())
    assert [(s["seq"], s["rank"]) for s in saved["sequences"]] == [("seq_a", 0), ("seq_static", 1)]


# ------------------------------------------------------------------------------------------------ options


def test_default_flow_loss_with_injected_gt_flow(data_root, tmp_path):
    """The evaluation's default optimizer settings (flow loss 0.01 from 10 % of the iterations, self motion masks)
    with the exact optical flow of the generator in place of RAFT."""
    from synthetic_fixtures import IdealFlowModel

    root, index = data_root
    flow = IdealFlowModel(index)
    args = parse_launch_args(["--mode=eval_pose", "--eval_dataset=sintel", f"--output_dir={tmp_path}",
                              f"--eval_data_root={root}", "--seq_list", "alley_2", "--eval_image_size", "64",
                              "--pose_eval_stride", "2", "--n_iter", "100", "--device", "cpu", "--silent"])
    assert args.flow_loss_weight == 0.01
    summary = pose.main(args, model=IdealPairModel(index), flow_model=flow)
    rec = summary.by_seq()["alley_2"]
    assert flow.calls > 0 and rec.status == "ok", rec
    assert rec.ate < min(0.003, 0.05 * motion_rms(scene_of(index, "alley_2"))), rec
    import cv2

    masks = [cv2.imread(str(tmp_path / f"alley_2/dynamic_mask_{k}.png"), cv2.IMREAD_GRAYSCALE) for k in range(8)]
    assert all(m is not None for m in masks) and any(m.any() for m in masks)  # self masks found moving pixels


def test_missing_flow_weights_is_an_input_error(data_root, tmp_path, monkeypatch):
    root, index = data_root
    import third_party.raft.loader as loader

    monkeypatch.setattr(loader, "REPO_ROOT", tmp_path)
    monkeypatch.chdir(tmp_path)
    args = parse_launch_args(["--mode=eval_pose", "--eval_dataset=sintel", f"--output_dir={tmp_path / 'o'}",
                              f"--eval_data_root={root}", "--seq_list", "cave_2", "--device", "cpu", "--silent"])
    with pytest.raises(Monst3rInputError, match="download_ckpt.sh"):
        pose.main(args, model=IdealPairModel(index))


def test_gt_masks_and_gt_focal(data_root, tmp_path):
    import cv2

    root, index = data_root
    scene = scene_of(index, "cave_2")
    focal_txt = root / "data/sintel/training/camdata_left/cave_2/focal.txt"
    np.savetxt(focal_txt, np.full(scene.num_frames, scene.focal))
    try:
        args = parse_launch_args(["--mode=eval_pose", "--eval_dataset=sintel", f"--output_dir={tmp_path}",
                                  f"--eval_data_root={root}", "--seq_list", "cave_2", "--use_gt_mask",
                                  "--use_gt_focal", *FAST])
        summary = pose.main(args, model=IdealPairModel(index))
    finally:
        focal_txt.unlink()
    assert summary.by_seq()["cave_2"].status == "ok"
    np.testing.assert_allclose(np.loadtxt(tmp_path / "cave_2/pred_focal.txt"), scene.focal, rtol=1e-5)
    mask = cv2.imread(str(tmp_path / "cave_2/dynamic_mask_1.png"), cv2.IMREAD_GRAYSCALE) > 0
    np.testing.assert_array_equal(mask, scene.frame(2).dynamic_mask)  # stride 2: result frame 1 = frame 2
    enlarged = cv2.imread(str(tmp_path / "cave_2/enlarged_dynamic_mask_1.png"), cv2.IMREAD_GRAYSCALE)
    np.testing.assert_array_equal(enlarged, cv2.dilate(mask.astype(np.uint8) * 255, np.ones((5, 5), np.uint8)))


def test_evaluate_in_training_returns_mean_ate(data_root, tmp_path):
    root, index = data_root
    args = parse_launch_args(["--eval_dataset=tum", f"--eval_data_root={root}", *FAST])
    ate = pose.evaluate_in_training(args, IdealPairModel(index), torch.device("cpu"), str(tmp_path / "3"))
    assert ate is not None and ate < 0.02
    assert json.loads((tmp_path / "3/_eval_summary.json").read_text())["n_evaluated"] == 1


def test_scannet_layout_and_rerun_reuses_existing_results(tmp_path):
    """ScanNet: replica-format GT (16 numbers per line, JPEG frames); an existing output folder is skipped and its
    metric file reused (the original's resume behaviour), and counted as such."""
    from PIL import Image

    from monst3r.datasets.synthetic import SyntheticScene

    scene = SyntheticScene(width=64, height=48, num_frames=5, seed=31)
    folder = tmp_path / "data/scannetv2/scene0707_00"
    (folder / "color_90").mkdir(parents=True)
    index = {}
    for k in range(scene.num_frames):
        path = folder / "color_90" / f"frame_{k:04d}.jpg"
        Image.fromarray(scene.frame(k).rgb).save(path, quality=95)
        index[str(path)] = (scene, k)
    np.savetxt(folder / "pose_90.txt", scene.poses.reshape(-1, 16))
    out = tmp_path / "out"
    args = parse_launch_args(["--mode=eval_pose", "--eval_dataset=scannet", f"--output_dir={out}",
                              f"--eval_data_root={tmp_path}", *FAST])
    first = pose.main(args, model=IdealPairModel(index)).by_seq()["scene0707_00"]
    assert first.status == "ok" and first.ate < 0.02
    second = pose.main(args, model=IdealPairModel(index))
    rec = second.by_seq()["scene0707_00"]
    assert rec.status == "reused" and rec.ate == first.ate and second.averages["ate"] == first.ate
    assert second.coverage_line() == "averaged over 1 of 1 sequences (1 reused: scene0707_00)"


def test_davis_has_no_gt_and_reads_its_masks(tmp_path):
    import cv2
    from PIL import Image

    from monst3r.datasets.synthetic import SyntheticScene

    scene = SyntheticScene(width=64, height=48, num_frames=6, seed=41)
    frames = tmp_path / "data/davis/DAVIS/JPEGImages/480p/bear"
    masks = tmp_path / "data/davis/DAVIS/masked_images/480p/bear"
    frames.mkdir(parents=True)
    masks.mkdir(parents=True)
    index = {}
    for k in range(scene.num_frames):
        Image.fromarray(scene.frame(k).rgb).save(frames / f"{k:05d}.jpg", quality=95)
        cv2.imwrite(str(masks / f"{k:05d}.jpg"), np.repeat(scene.frame(k).dynamic_mask[..., None] * 255, 3, -1)
                    .astype(np.uint8))
        index[str(frames / f"{k:05d}.jpg")] = (scene, k)
    args = parse_launch_args(["--mode=eval_pose", "--eval_dataset=davis", f"--output_dir={tmp_path / 'out'}",
                              f"--eval_data_root={tmp_path}", "--use_gt_mask", *FAST])
    summary = pose.main(args, model=IdealPairModel(index))
    assert [r.status for r in summary.records] == ["no_gt"] and math.isnan(summary.averages["ate"])
    assert summary.coverage_line() == "averaged over 0 of 1 sequences (1 no gt: bear)"
    mask = cv2.imread(str(tmp_path / "out/bear/dynamic_mask_1.png"), cv2.IMREAD_GRAYSCALE) > 0
    assert (mask == scene.frame(2).dynamic_mask).mean() > 0.98  # GT masks (JPEG-compressed) were used
    assert pose.evaluate_in_training(args, IdealPairModel(index), torch.device("cpu"), str(tmp_path / "e")) is None
