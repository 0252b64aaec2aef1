"""Self-consistency of the synthetic dynamic-scene generator (monst3r.datasets.synthetic)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from monst3r.datasets.synthetic import SceneConfig, SyntheticScene, main, parse_size, window_pairs, write_scene
from monst3r.errors import Monst3rInputError
from monst3r.eval.trajectory import load_traj, tum_rows_to_c2w

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def scene():
    return SyntheticScene(SceneConfig(width=160, height=96, num_frames=8, seed=5))


def _pixel_grid(h, w):
    u, v = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
    return u, v


def _reproject(scene, i, j):
    """Independent float64 reprojection of frame i's pixels into frame j, treating everything as static."""
    f = scene.frame(i)
    k = f.intrinsics
    u, v = _pixel_grid(scene.height, scene.width)
    z = f.depth.astype(np.float64)
    cam = np.stack([(u - k[0, 2]) / k[0, 0] * z, (v - k[1, 2]) / k[1, 1] * z, z], axis=-1)
    world = cam @ f.pose[:3, :3].T + f.pose[:3, 3]
    pose_j = scene.frame(j).pose
    cam_j = (world - pose_j[:3, 3]) @ pose_j[:3, :3]
    uv = cam_j[..., :2] / cam_j[..., 2:] * k[0, 0] + k[:2, 2]
    return uv - np.stack([u, v], axis=-1)


def test_frame_contents(scene):
    f = scene.frame(3)
    h, w = 96, 160
    assert f.rgb.shape == (h, w, 3) and f.rgb.dtype == np.uint8
    assert f.depth.shape == (h, w) and f.depth.dtype == np.float32 and np.all(f.depth > 0)
    assert f.dynamic_mask.shape == (h, w) and f.dynamic_mask.dtype == bool
    assert f.pose.shape == (4, 4) and np.allclose(f.pose[:3, :3] @ f.pose[:3, :3].T, np.eye(3), atol=1e-12)
    assert np.isclose(np.linalg.det(f.pose[:3, :3]), 1.0)
    k = f.intrinsics
    assert k[0, 2] == w / 2 and k[1, 2] == h / 2 and k[0, 0] == k[1, 1]
    # rich texture: plenty of local contrast everywhere, not flat colours
    grey = f.rgb.astype(np.float64).mean(axis=-1)
    assert np.median(np.abs(np.diff(grey, axis=1))) > 1.0 and grey.std() > 10
    # camera rotates and translates
    rel = scene.relative_pose(0, 7)
    assert np.linalg.norm(rel[:3, 3]) > 0.05
    assert np.degrees(np.arccos(np.clip((np.trace(rel[:3, :3]) - 1) / 2, -1, 1))) > 1.0


def test_static_pixels_follow_flow(scene):
    for i, j in [(0, 1), (0, 5), (6, 2)]:
        flow, valid = scene.flow(i, j)
        static = valid & ~scene.frame(i).dynamic_mask
        assert static.mean() > 0.5
        assert np.abs(_reproject(scene, i, j) - flow)[static].max() < 0.01


def test_forward_backward_consistency(scene):
    h, w = scene.height, scene.width
    for i, j in [(1, 2), (2, 6)]:
        fwd, valid_f = scene.flow(i, j)
        bwd, valid_b = scene.flow(j, i)
        sid_i, sid_j = scene.frame(i).surface_id, scene.frame(j).surface_id
        u, v = _pixel_grid(h, w)
        qx, qy = u + fwd[..., 0], v + fwd[..., 1]
        x0, y0 = np.floor(qx).astype(int), np.floor(qy).astype(int)
        ok = valid_f & (x0 >= 0) & (y0 >= 0) & (x0 < w - 1) & (y0 < h - 1)
        x0, y0 = np.clip(x0, 0, w - 2), np.clip(y0, 0, h - 2)
        for dx in (0, 1):
            for dy in (0, 1):  # interpolate only inside one surface, where the backward flow is valid
                ok &= (sid_j[y0 + dy, x0 + dx] == sid_i) & valid_b[y0 + dy, x0 + dx]
        wx, wy = (qx - x0)[..., None], (qy - y0)[..., None]
        back = ((1 - wy) * ((1 - wx) * bwd[y0, x0] + wx * bwd[y0, x0 + 1])
                + wy * ((1 - wx) * bwd[y0 + 1, x0] + wx * bwd[y0 + 1, x0 + 1]))
        err = np.linalg.norm(fwd + back, axis=-1)[ok]
        assert ok.mean() > 0.7
        assert np.percentile(err, 99) < 0.02 and err.max() < 0.5
        # occluded / out-of-view pixels are flagged: their forward-backward error is not small
        assert (~valid_f).any()


def test_dynamic_masks_cover_exactly_the_moving_objects(scene):
    moving = [k for k, p in enumerate(scene.primitives) if p.dynamic]
    seen = False
    for i, j in [(0, 3), (4, 5)]:
        f = scene.frame(i)
        np.testing.assert_array_equal(f.dynamic_mask, np.isin(f.surface_id // 8, moving))
        flow, _ = scene.flow(i, j)
        rigid, _ = scene.rigid_flow(i, j)
        # static pixels: the flow is exactly the camera-induced (rigid) flow ...
        np.testing.assert_array_equal(flow[~f.dynamic_mask], rigid[~f.dynamic_mask])
        # ... and every masked pixel moves on its own
        if f.dynamic_mask.any():
            seen = True
            assert np.all(np.linalg.norm(flow - rigid, axis=-1)[f.dynamic_mask] > 1e-4)
    assert seen


def test_ideal_pair_reproduces_pointmaps(scene):
    for i, j in [(2, 6), (5, 1)]:
        pred = scene.ideal_pair(i, j)
        np.testing.assert_allclose(pred["pts3d"], scene.pointmap(i), atol=1e-6)
        rel = scene.relative_pose(i, j)  # camera j -> camera i
        back = (pred["pts3d_in_other_view"].astype(np.float64) - rel[:3, 3]) @ rel[:3, :3]
        np.testing.assert_allclose(back, scene.pointmap(j), atol=1e-4)
        assert np.all(pred["conf1"] == 5.0) and np.all(pred["conf2"] == 5.0)
        np.testing.assert_allclose(pred["pts3d"][..., 2], scene.frame(i).depth, rtol=1e-6)
    noisy = scene.ideal_pair(2, 6, noise_std=0.05, conf=10.0, scale=None)
    exact = scene.ideal_pair(2, 6)
    s = noisy["scale"]
    assert 0.5 <= s <= 2.0
    ratio = noisy["pts3d"][..., 2] / (s * exact["pts3d"][..., 2])
    assert 0.03 < ratio.std() < 0.07
    assert noisy["conf1"].min() >= 1.0 and noisy["conf1"].max() <= 10.0
    # noisier pixels get lower confidence
    assert np.corrcoef(np.abs(ratio - 1).ravel(), noisy["conf1"].ravel())[0, 1] < -0.5
    again = scene.ideal_pair(2, 6, noise_std=0.05, conf=10.0, scale=None)
    np.testing.assert_array_equal(noisy["pts3d"], again["pts3d"])


def test_ideal_inference_dict(scene):
    pairs = [(0, 1), (1, 0), (2, 4)]
    out = scene.ideal_inference(pairs, with_poses=True)
    e, h, w = 3, scene.height, scene.width
    assert out["loss"] is None
    for key, idx in (("view1", [0, 1, 2]), ("view2", [1, 0, 4])):
        view = out[key]
        assert view["img"].shape == (e, 3, h, w) and view["img"].dtype == torch.float32
        assert view["img"].min() >= -1 and view["img"].max() <= 1
        assert view["idx"] == idx and view["instance"] == [str(k) for k in idx]
        assert view["true_shape"].dtype == torch.int32 and view["true_shape"].tolist() == [[h, w]] * e
        assert view["mask"].shape == (e, h, w) and view["mask"].dtype == torch.bool
        assert view["dynamic_mask"].dtype == torch.bool
        np.testing.assert_array_equal(view["dynamic_mask"][0].numpy(), scene.frame(idx[0]).dynamic_mask)
        assert view["camera_pose"].shape == (e, 4, 4)
    np.testing.assert_allclose(out["view1"]["img"][2].permute(1, 2, 0).numpy(),
                               scene.frame(2).rgb / 255.0 * 2 - 1, atol=1e-6)
    assert out["pred1"]["pts3d"].shape == (e, h, w, 3) and out["pred1"]["conf"].shape == (e, h, w)
    assert out["pred2"]["pts3d_in_other_view"].shape == (e, h, w, 3) and out["pred2"]["conf"].dtype == torch.float32
    np.testing.assert_array_equal(out["pred2"]["pts3d_in_other_view"][2].numpy(),
                                  scene.ideal_pair(2, 4)["pts3d_in_other_view"])
    no_masks = scene.ideal_inference([(0, 1)], gt_dynamic_mask=False)
    assert not no_masks["view1"]["dynamic_mask"].any()


def test_textures_support_optical_flow(scene):
    cv2 = pytest.importorskip("cv2")
    flow, valid = scene.flow(2, 4)
    grey = [cv2.cvtColor(scene.frame(k).rgb, cv2.COLOR_RGB2GRAY) for k in (2, 4)]
    estimate = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM).calc(grey[0], grey[1], None)
    epe = np.linalg.norm(estimate - flow, axis=-1)[valid]
    assert np.median(epe) < 0.3


def test_determinism_and_options():
    cfg = SceneConfig(width=64, height=48, num_frames=3, seed=11)
    a, b = SyntheticScene(cfg), SyntheticScene(cfg)
    for k in range(3):
        fa, fb = a.frame(k), b.frame(k)
        for name in ("rgb", "depth", "pose", "intrinsics", "dynamic_mask", "surface_id"):
            np.testing.assert_array_equal(getattr(fa, name), getattr(fb, name))
    np.testing.assert_array_equal(a.flow(0, 2)[0], b.flow(0, 2)[0])
    assert not np.array_equal(a.frame(0).rgb, SyntheticScene(cfg, seed=12).frame(0).rgb)
    static = SyntheticScene(SceneConfig(width=64, height=48, num_frames=20, seed=3, static_camera=True))
    rel = np.linalg.inv(static.poses[0]) @ static.poses[-1]
    assert 0 < np.linalg.norm(rel[:3, 3]) < 0.01
    assert np.degrees(np.arccos(np.clip((np.trace(rel[:3, :3]) - 1) / 2, -1, 1))) < 0.5
    single = SyntheticScene(SceneConfig(width=512, height=288, num_frames=1, seed=0, num_objects=0))
    assert single.frame(0).rgb.shape == (288, 512, 3) and not single.frame(0).dynamic_mask.any()
    assert window_pairs(4, 2) == [(0, 1), (0, 2), (1, 0), (1, 2), (1, 3), (2, 0), (2, 1), (2, 3), (3, 1), (3, 2)]


@pytest.mark.parametrize("kwargs", [dict(num_frames=0), dict(seed=-1), dict(width=32), dict(height=600),
                                    dict(num_objects=9), dict(num_frames=2.5)])
def test_bad_config(kwargs):
    with pytest.raises(Monst3rInputError):
        SyntheticScene(SceneConfig(**{**dict(width=64, height=48, num_frames=2), **kwargs}))


def test_parse_size():
    assert parse_size("512x288") == (512, 288) and parse_size("64X48") == (64, 48)
    for bad in ("512", "512x", "axb", "512*288", "-64x48", "16x16", "1024x768"):
        with pytest.raises(Monst3rInputError):
            parse_size(bad)


def test_writer_and_cli(tmp_path):
    out = tmp_path / "scene"
    assert main(["--out", str(out), "--frames", "3", "--size", "64x48", "--seed", "2"]) == 0
    names = sorted(p.name for p in out.iterdir() if p.name != ".monst3r_manifest.json")  # the write policy's list
    assert names == ["00000.png", "00001.png", "00002.png", "depth", "dynamic_masks", "gt_traj.txt",
                     "intrinsics.npy", "meta.json", "poses.npy"]
    from PIL import Image

    scene = SyntheticScene(SceneConfig(width=64, height=48, num_frames=3, seed=2))
    np.testing.assert_array_equal(np.asarray(Image.open(out / "00001.png")), scene.frame(1).rgb)
    np.testing.assert_array_equal(np.load(out / "depth" / "00002.npy"), scene.frame(2).depth)
    mask = np.asarray(Image.open(out / "dynamic_masks" / "00000.png"))
    np.testing.assert_array_equal(mask > 127, scene.frame(0).dynamic_mask)
    np.testing.assert_array_equal(np.load(out / "poses.npy"), scene.poses)
    np.testing.assert_array_equal(np.load(out / "intrinsics.npy"), scene.intrinsics)
    rows, stamps = load_traj(out / "gt_traj.txt", traj_format="tum")
    np.testing.assert_allclose(tum_rows_to_c2w(rows), scene.poses, atol=1e-8)
    np.testing.assert_array_equal(stamps, [0.0, 1.0, 2.0])
    meta = json.loads((out / "meta.json").read_text())
    assert meta["seed"] == 2 and meta["num_frames"] == 3 and meta["frames"] == ["00000.png", "00001.png", "00002.png"]

    # a non-empty folder is refused without --overwrite and left untouched
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    assert main(["--out", str(out), "--frames", "2", "--size", "64x48"]) == 2
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before
    with pytest.raises(Monst3rInputError, match="--overwrite"):
        write_scene(scene, out)
    assert main(["--out", str(out), "--frames", "2", "--size", "64x48", "--overwrite"]) == 0
    assert sorted(p.name for p in out.glob("*.png")) == ["00000.png", "00001.png"]
    # nothing half-written: no temporary folders are left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene"]


def test_cli_errors_are_one_line(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    for args in (["--size", "big"], ["--frames", "0"], ["--seed", "-3"], ["--frames", "many"]):
        proc = subprocess.run([sys.executable, "-m", "monst3r.datasets.synthetic", "--out", str(tmp_path / "x"),
                               "--size", "64x48", *args], capture_output=True, text=True, env=env, cwd=REPO_ROOT)
        assert proc.returncode != 0
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr
        assert not (tmp_path / "x").exists()
    assert not any(tmp_path.iterdir())
