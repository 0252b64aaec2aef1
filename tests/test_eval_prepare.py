"""Preparation of the evaluation sets (fake raw downloads in tmp_path) and the download scripts (dry runs)."""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from monst3r.datasets.synthetic import SyntheticScene
from monst3r.errors import Monst3rInputError
from monst3r.eval import prepare
from monst3r.eval.depth_io import write_dpt
from monst3r.eval.scannet_sens import export_sens, write_sens
from monst3r.eval.trajectory import write_sintel_cam

REPO = Path(__file__).resolve().parents[1]


def _touch_pngs(folder: Path, names):
    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        (folder / n).write_bytes(n.encode())


def test_associate_is_greedy_closest_unique():
    a = [0.0, 0.033, 0.066, 0.5]
    b = [0.001, 0.010, 0.034, 0.06, 0.9]
    assert prepare.associate(a, b) == [(0, 0), (1, 2), (2, 3)]
    assert prepare.associate([0.0, 0.005], [0.004]) == [(1, 0)]  # closest pair wins, each stamp used once


def test_prepare_tum(tmp_path):
    seq = tmp_path / "rgbd_dataset_freiburg3_walking_xyz"
    stamps = 1341846313.0 + np.arange(300) / 30.0
    _touch_pngs(seq / "rgb", [f"{t:.6f}.png" for t in stamps])
    (seq / "rgb.txt").write_text("# color images\n# file\n# timestamp filename\n"
                                 + "".join(f"{t:.6f} rgb/{t:.6f}.png\n" for t in stamps))
    gt_stamps = 1341846313.0 + 0.004 + np.arange(1000) / 100.0
    lines = [f"{t:.4f} {k}.1 2.2 3.3 0.0 0.0 0.0 1.0" for k, t in enumerate(gt_stamps)]
    (seq / "groundtruth.txt").write_text("# ground truth\n# timestamp tx ty tz qx qy qz qw\n" + "\n".join(lines))
    assert prepare.prepare_tum(tmp_path) == [seq.name]
    kept = sorted(p.name for p in (seq / "rgb_90").iterdir())
    assert len(kept) == 90 and kept[:2] == [f"{stamps[0]:.6f}.png", f"{stamps[3]:.6f}.png"]
    gt = (seq / "groundtruth_90.txt").read_text().splitlines()
    assert len(gt) == 90 and gt[1] == lines[10]  # frame 3 (t = 0.1 s) <-> GT row 10 (t = 0.104 s), verbatim
    with pytest.raises(Monst3rInputError, match="download_tum_dynamics.sh"):
        prepare.prepare_tum(tmp_path / "missing")


def test_prepare_bonn(tmp_path):
    seq = tmp_path / "rgbd_bonn_balloon2"
    _touch_pngs(seq / "rgb", [f"{k:04d}.png" for k in range(150)])
    _touch_pngs(seq / "depth", [f"{k:04d}.png" for k in range(150)])
    np.savetxt(seq / "groundtruth.txt", np.arange(150 * 8, dtype=float).reshape(150, 8), header="t x y z")
    assert prepare.prepare_bonn(tmp_path) == ["rgbd_bonn_balloon2"]
    rgb = sorted(p.name for p in (seq / "rgb_110").iterdir())
    assert len(rgb) == 110 and rgb[0] == "0030.png" and rgb[-1] == "0139.png"
    gt = np.loadtxt(seq / "groundtruth_110.txt")
    assert gt.shape == (110, 8) and gt[0, 0] == 30 * 8


def test_scannet_sens_export_and_prepare(tmp_path):
    import cv2

    rng = np.random.default_rng(0)
    colors = [cv2.imencode(".jpg", rng.integers(0, 255, (12, 16, 3), dtype=np.uint8))[1].tobytes() for _ in range(9)]
    depths = [rng.integers(0, 5000, (6, 8), dtype=np.uint16) for _ in range(9)]
    poses = [np.eye(4) + k for k in range(9)]
    write_sens(tmp_path / "scene0707_00.sens", colors, depths, poses, (16, 12))
    scene = tmp_path / "scannetv2" / "scene0707_00"
    assert export_sens(tmp_path / "scene0707_00.sens", scene) == 9
    np.testing.assert_array_equal(cv2.imread(str(scene / "depth/4.png"), cv2.IMREAD_UNCHANGED), depths[4])
    assert prepare.prepare_scannet(tmp_path / "scannetv2", step=3, end=9) == ["scene0707_00"]
    assert sorted(p.name for p in (scene / "color_3").iterdir()) == [f"frame_{k:04d}.jpg" for k in range(3)]
    pose = np.loadtxt(scene / "pose_3.txt")
    np.testing.assert_allclose(pose[1], (np.eye(4) + 3).reshape(16))


def test_prepare_kitti(tmp_path):
    drive = "2011_09_26_drive_0002_sync"
    names = [f"{k:010d}.png" for k in range(5, 20)]
    _touch_pngs(tmp_path / "val" / drive / "proj_depth/groundtruth/image_02", names)
    _touch_pngs(tmp_path / "2011_09_26" / drive / "image_02/data", [f"{k:010d}.png" for k in range(25)])
    assert prepare.prepare_kitti(tmp_path, count=10) == [f"{drive}_02"]
    sel = tmp_path / "depth_selection/val_selection_cropped"
    assert sorted(p.name for p in (sel / "groundtruth_depth_gathered" / f"{drive}_02").iterdir()) == names[:10]
    assert sorted(p.name for p in (sel / "image_gathered" / f"{drive}_02").iterdir()) == names[:10]


def test_prepare_nyuv2(tmp_path):
    import h5py

    src = tmp_path / "nyu_v2" / "val" / "official"  # the original download folder name is accepted too
    src.mkdir(parents=True)
    depth = np.random.default_rng(1).uniform(0.5, 9, (6, 8)).astype(np.float32)
    with h5py.File(src / "00001.h5", "w") as f:
        f["depth"] = depth
        f["rgb"] = np.zeros((3, 6, 8), np.uint8)
    assert prepare.prepare_nyuv2(tmp_path / "nyu-v2") == 1
    out = tmp_path / "nyu-v2" / "val"
    np.testing.assert_array_equal(np.load(out / "nyu_depths/00001.npy"), depth)
    assert (out / "nyu_images/00001.png").is_file()


def _write_flo(path: Path, flow: np.ndarray) -> None:
    with open(path, "wb") as f:
        np.array([202021.25], "<f4").tofile(f)
        np.array([flow.shape[1], flow.shape[0]], "<i4").tofile(f)
        flow.astype("<f4").tofile(f)


def test_sintel_dynamic_labels_find_the_moving_objects(tmp_path):
    scene = SyntheticScene(width=64, height=48, num_frames=3, seed=7)
    base = tmp_path / "training"
    for sub in ("flow", "depth", "camdata_left"):
        (base / sub / "alley_1").mkdir(parents=True)
    for k in range(3):
        f = scene.frame(k)
        write_dpt(base / "depth/alley_1" / f"frame_{k + 1:04d}.dpt", f.depth)
        write_sintel_cam(base / "camdata_left/alley_1" / f"frame_{k + 1:04d}.cam", f.intrinsics,
                         np.linalg.inv(f.pose)[:3])
        if k < 2:
            _write_flo(base / "flow/alley_1" / f"frame_{k + 1:04d}.flo", scene.flow(k, k + 1)[0])
    assert prepare.sintel_dynamic_labels(base, threshold=0.1) == 2
    import cv2

    label = cv2.imread(str(base / "dynamic_label_perfect/alley_1/frame_0001.png"), cv2.IMREAD_GRAYSCALE) > 0
    gt = scene.frame(0).dynamic_mask
    assert not (base / "dynamic_label_perfect/alley_1/frame_0003.png").exists()
    assert (label & ~gt).mean() < 0.01  # static pixels are static
    assert (label & gt).sum() > 0.5 * gt.sum()  # most moving pixels are found


@pytest.mark.parametrize("script", ["download_sintel.sh", "download_bonn.sh", "download_kitti.sh",
                                    "download_nyuv2.sh", "download_tum_dynamics.sh", "download_scannetv2.sh"])
def test_download_scripts_dry_run(script, tmp_path):
    env = dict(os.environ, MONST3R_DATA_ROOT=str(tmp_path))
    res = subprocess.run(["bash", str(REPO / "data" / script), "--dry-run"], env=env, capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert "download: http" in res.stdout and str(tmp_path) in res.stdout
    assert not any(tmp_path.iterdir())  # a dry run writes nothing


def test_download_davis_masks_and_dry_run(tmp_path):
    spec = importlib.util.spec_from_file_location("download_davis", REPO / "data" / "download_davis.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    palette = np.array([[0, 1], [2, 0]], np.uint8)
    assert mod.object_mask(palette)[..., 0].tolist() == [[0, 255], [255, 0]]
    rgb = np.zeros((1, 2, 3), np.uint8)
    rgb[0, 1] = (128, 0, 0)
    assert mod.object_mask(rgb)[0, :, 0].tolist() == [0, 255]
    res = subprocess.run([sys.executable, str(REPO / "data" / "download_davis.py"), "--dry-run"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and "DAVIS-2017-trainval-480p.zip" in res.stdout
