"""Result folder (monst3r.io), Reconstruction, glb/ply/COLMAP exports and the scene's save_* methods."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from monst3r import io
from monst3r.errors import Monst3rInputError
from monst3r.result import Reconstruction
from monst3r.utils.geometry import tum_to_pose_matrix


def make_result(n=4, H=12, W=16, seed=0, sizes=None) -> Reconstruction:
    rng = np.random.default_rng(seed)
    poses, depths, confs, init, masks, rgb = [], [], [], [], [], []
    for k in range(n):
        h, w = sizes[k] if sizes else (H, W)
        ang = 0.1 * k
        c2w = np.eye(4)
        c2w[:3, :3] = [[np.cos(ang), 0, np.sin(ang)], [0, 1, 0], [-np.sin(ang), 0, np.cos(ang)]]
        c2w[:3, 3] = [0.1 * k, -0.02 * k, 0.05]
        poses.append(c2w)
        depths.append(rng.uniform(0.5, 3.0, (h, w)).astype(np.float32))
        c = rng.uniform(1.0, 8.0, (h, w)).astype(np.float32)
        c[0, :3] = 0  # cleaned points -> -inf in conf_*.npy
        confs.append(c)
        init.append(rng.uniform(1.0, 8.0, (h, w)).astype(np.float32))
        masks.append(rng.random((h, w)) > 0.8)
        rgb.append(rng.random((h, w, 3)).astype(np.float32))
    K = np.array([[[20.0, 0, (sizes[k][1] if sizes else W) / 2], [0, 20.0, (sizes[k][0] if sizes else H) / 2],
                   [0, 0, 1]] for k in range(n)])
    return Reconstruction(poses=np.stack(poses), intrinsics=K, depths=depths, confs=confs, init_confs=init,
                          dynamic_masks=masks, rgb=rgb, meta=dict(source="test", sam2="off"))


def assert_same(a: Reconstruction, b: Reconstruction, rgb_atol=0.5 / 255):
    np.testing.assert_allclose(a.poses, b.poses, atol=1e-6)
    np.testing.assert_allclose(a.intrinsics, b.intrinsics, atol=1e-6)
    for k in range(a.n_frames):
        np.testing.assert_array_equal(a.depths[k], b.depths[k])
        np.testing.assert_allclose(a.confs[k], b.confs[k], rtol=1e-6)
        np.testing.assert_allclose(a.init_confs[k], b.init_confs[k], rtol=1e-6)
        np.testing.assert_array_equal(a.dynamic_masks[k], b.dynamic_masks[k])
        np.testing.assert_allclose(a.rgb[k], b.rgb[k], atol=rgb_atol)


def test_round_trip(tmp_path):
    rec = make_result()
    folder = io.save_result(rec, tmp_path / "seq", focal_file=True)
    names = sorted(p.name for p in folder.iterdir())
    assert "pred_traj.txt" in names and "pred_intrinsics.txt" in names and "pred_focal.txt" in names
    assert "frame_0000.npy" in names and "frame_0003.png" in names and "conf_3.npy" in names
    assert "init_conf_0.npy" in names and "dynamic_mask_2.png" in names and "enlarged_dynamic_mask_2.png" in names
    assert "scene.glb" in names and "_depth_maps.gif" in names
    assert np.isneginf(np.load(folder / "conf_0.npy")[0, :3]).all()
    lines = (folder / "pred_traj.txt").read_text().splitlines()
    assert lines[1].split()[0] == "1.0" and len(lines[1].split()) == 8
    assert (folder / "pred_intrinsics.txt").read_text().splitlines()[0].startswith("20.000000 0.000000 8.000000")
    back = io.load_result(folder)
    assert_same(rec, back)
    assert back.meta["source"] == "test" and back.meta["loaded_from"] == str(folder)


def test_round_trip_frames_of_different_sizes(tmp_path):
    rec = make_result(n=3, sizes=[(12, 16), (10, 16), (12, 14)])
    assert isinstance(rec.depths, list)
    back = io.load_result(io.save_result(rec, tmp_path / "seq"))
    assert_same(rec, back)


def test_zero_padding_beyond_ten_frames(tmp_path):
    rec = make_result(n=11, H=4, W=6)
    folder = io.save_result(rec, tmp_path / "seq", glb=False, depth_gif=False)
    assert (folder / "frame_0010.npy").is_file() and (folder / "conf_10.npy").is_file()
    assert (folder / "dynamic_mask_10.png").is_file() and not (folder / "conf_0010.npy").exists()
    back = io.load_result(folder)
    np.testing.assert_array_equal(back.depths[10], rec.depths[10])  # numeric (not lexicographic) order


def test_reads_a_folder_written_by_the_original(tmp_path):
    """No metadata file, quaternions with negative w, -inf confidences, only enlarged masks, 12-frame names."""
    rec = make_result(n=3)
    folder = tmp_path / "orig"
    folder.mkdir()
    rows = []
    for k, p in enumerate(rec.poses):
        from scipy.spatial.transform import Rotation
        x, y, z, w = Rotation.from_matrix(p[:3, :3]).as_quat()
        if k == 1:
            x, y, z, w = -x, -y, -z, -w  # the original does not canonicalise the sign
        rows.append(" ".join(repr(float(v)) for v in (k, *p[:3, 3], w, x, y, z)))
    (folder / "pred_traj.txt").write_text("\n".join(rows) + "\n")
    np.savetxt(folder / "pred_intrinsics.txt", rec.intrinsics.reshape(3, 9), fmt="%.6f")
    for k in range(3):
        np.save(folder / f"frame_{k:04d}.npy", rec.depths[k])
        cv2.imwrite(str(folder / f"frame_{k:04d}.png"), np.rint(rec.rgb[k][..., ::-1] * 255).astype(np.uint8))
        with np.errstate(divide="ignore"):
            np.save(folder / f"conf_{k}.npy", np.log(rec.confs[k]))
            np.save(folder / f"init_conf_{k}.npy", np.log(rec.init_confs[k]))
        cv2.imwrite(str(folder / f"enlarged_dynamic_mask_{k}.png"), rec.dynamic_masks[k].astype(np.uint8) * 255)
    back = io.load_result(folder)
    np.testing.assert_allclose(back.poses, rec.poses, atol=1e-6)
    assert (back.confs[0][0, :3] == 0).all()
    np.testing.assert_array_equal(back.dynamic_masks[2], rec.dynamic_masks[2])
    np.testing.assert_allclose(tum_to_pose_matrix([0, 0, 0, -1, 0, 0, 0]), np.eye(4), atol=1e-12)


def test_atomic_write_never_leaves_a_half_folder(tmp_path, monkeypatch):
    rec = make_result()
    target = tmp_path / "seq"

    def boom(*a, **k):
        raise RuntimeError("disk full")
    monkeypatch.setattr(io, "write_conf_maps", boom)
    with pytest.raises(RuntimeError):
        io.save_result(rec, target)
    assert not target.exists() and list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    io.save_result(rec, target)
    (target / "notes.md").write_text("kept")
    old_traj = (target / "pred_traj.txt").read_text()
    monkeypatch.setattr(io, "write_conf_maps", boom)
    with pytest.raises(RuntimeError):
        io.save_result(make_result(n=2, seed=1), target)
    assert (target / "pred_traj.txt").read_text() == old_traj  # the previous complete result is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seq"]
    monkeypatch.undo()
    io.save_result(make_result(n=2, seed=1), target)  # replace: fewer frames, unrelated file kept
    assert (target / "notes.md").read_text() == "kept" and not (target / "frame_0003.npy").exists()
    assert io.load_result(target).n_frames == 2


def test_load_errors(tmp_path):
    with pytest.raises(Monst3rInputError):
        io.load_result(tmp_path)
    folder = io.save_result(make_result(), tmp_path / "seq", glb=False)
    (folder / "frame_0003.npy").unlink()
    with pytest.raises(Monst3rInputError, match="depth maps"):
        io.load_result(folder)


def test_reconstruction_validation():
    rec = make_result()
    with pytest.raises(Monst3rInputError):
        Reconstruction(poses=rec.poses, intrinsics=rec.intrinsics[:2], depths=rec.depths, confs=rec.confs,
                       init_confs=rec.init_confs, dynamic_masks=rec.dynamic_masks, rgb=rec.rgb)
    with pytest.raises(Monst3rInputError):
        Reconstruction(poses=rec.poses, intrinsics=rec.intrinsics, depths=rec.depths, confs=rec.confs[:3],
                       init_confs=rec.init_confs, dynamic_masks=rec.dynamic_masks, rgb=rec.rgb)
    sub = rec.subset([1, 3])
    assert sub.n_frames == 2 and np.array_equal(sub.depths[1], rec.depths[3])
    pts = rec.pts3d(0)
    d, K, c2w = rec.depths[0], rec.intrinsics[0], rec.poses[0]
    cam = np.linalg.inv(c2w)[:3, :3] @ pts[5, 7] + np.linalg.inv(c2w)[:3, 3]
    assert cam[2] == pytest.approx(d[5, 7], rel=1e-5)
    assert cam[0] / cam[2] * K[0, 0] + K[0, 2] == pytest.approx(7, abs=1e-3)


def test_glb_ply_colmap_exports(tmp_path):
    trimesh = pytest.importorskip("trimesh")
    from monst3r import viz
    rec = make_result()
    path = viz.export_glb(rec, tmp_path / "scene.glb")
    scene = trimesh.load(str(path))
    geoms = list(scene.geometry.values())
    n_pts = sum((np.asarray(m) > 1.1).sum() for m in rec.init_confs)
    assert any(isinstance(g, trimesh.PointCloud) and len(g.vertices) == n_pts for g in geoms)
    assert sum(isinstance(g, trimesh.Trimesh) for g in geoms) >= rec.n_frames  # camera frusta
    viz.export_glb(rec, tmp_path / "mesh.glb", as_pointcloud=False, transparent_cams=True)
    plys = io.export_ply_frames(rec, tmp_path / "ply")
    assert len(plys) == rec.n_frames and len(trimesh.load(str(plys[0])).vertices) > 0
    folder = io.export_colmap(rec, tmp_path / "colmap", max_points_per_frame=50)
    cams = [l for l in (folder / "cameras.txt").read_text().splitlines() if not l.startswith("#")]
    imgs = [l for l in (folder / "images.txt").read_text().splitlines() if not l.startswith("#")]
    pts = [l for l in (folder / "points3D.txt").read_text().splitlines() if not l.startswith("#")]
    assert len(cams) == rec.n_frames and len(imgs) == 2 * rec.n_frames and len(pts) == 50 * rec.n_frames
    q = np.array(imgs[2].split()[1:8], float)  # frame 1: w2c quaternion + translation
    w2c = np.linalg.inv(rec.poses[1])
    from scipy.spatial.transform import Rotation
    np.testing.assert_allclose(Rotation.from_quat(q[[1, 2, 3, 0]]).as_matrix(), w2c[:3, :3], atol=1e-6)
    np.testing.assert_allclose(q[4:], w2c[:3, 3], atol=1e-6)


def test_scene_save_methods_and_realtime_files(tmp_path):
    """The original's save_* methods on a scene, and the real-time demo's raw files."""
    from monst3r.cloud_opt import global_aligner
    from monst3r.datasets.synthetic import SyntheticScene
    sc = SyntheticScene(width=64, height=48, num_frames=3, seed=2, num_objects=1)
    pairs = [(0, 1), (1, 2), (0, 2), (1, 0), (2, 1), (2, 0)]
    out = sc.ideal_inference(pairs, noise_std=0.01)
    scene = global_aligner(out, device="cpu", shared_focal=True, verbose=False)
    scene.compute_global_alignment(init="mst", niter=20, schedule="cosine", lr=0.01)
    scene.save_tum_poses(tmp_path / "pred_traj.txt")
    scene.save_focals(tmp_path / "pred_focal.txt")
    scene.save_intrinsics(tmp_path / "pred_intrinsics.txt")
    for m in ("save_depth_maps", "save_conf_maps", "save_init_conf_maps", "save_rgb_imgs", "save_dynamic_masks"):
        getattr(scene, m)(tmp_path)
    io.enlarge_seg_masks(tmp_path, kernel_size=5)
    rec = io.load_result(tmp_path)
    np.testing.assert_allclose(rec.poses, scene.get_im_poses().detach().numpy(), atol=1e-6)
    tum, ts = scene.get_tum_poses()
    assert tum.shape == (3, 7) and list(ts) == [0.0, 1.0, 2.0]
    assert (tmp_path / "enlarged_dynamic_mask_2.png").is_file()
    rt = sc.ideal_inference([(1, 0), (1, 1), (1, 2)])
    io.save_realtime_outputs(rt, tmp_path / "rt")
    a = np.load(tmp_path / "rt" / "pts3d2_p2.npy")
    assert a.shape == (48, 64, 6) and (a[..., 3:] >= 0).all() and (a[..., 3:] <= 1).all()
    meta = json.loads((io.save_result(scene.result(), tmp_path / "full", glb=False) / io.META_FILE).read_text())
    assert meta["n_frames"] == 3 and meta["source"] == "PointCloudOptimizer"
