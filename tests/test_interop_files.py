"""Our result files read by the outside tools users run: evo (TUM trajectories) and pycolmap (COLMAP text model).

Both trajectory layouts are exercised explicitly: ``pred_traj.txt`` keeps the original's w-first quaternion,
``pred_traj_tum.txt`` is standard TUM (w-last) and is what evo reads.
"""
from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from monst3r import io
from monst3r.errors import Monst3rInputError
from monst3r.trajectory_io import format_trajectory, read_trajectory, write_trajectory
from test_optimizer_io import make_result


def _rot_err_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angle (degrees) between the rotations of c2w stacks ``[N, 4, 4]``."""
    rel = np.einsum("nji,njk->nik", a[:, :3, :3], b[:, :3, :3])
    return np.degrees(Rotation.from_matrix(rel).magnitude())


def _random_poses(n=7, seed=3):
    rng = np.random.default_rng(seed)
    c2w = np.tile(np.eye(4), (n, 1, 1))
    c2w[:, :3, :3] = Rotation.random(n, random_state=seed).as_matrix()
    c2w[:, :3, 3] = rng.normal(size=(n, 3)) * 2
    return c2w


def test_pred_traj_tum_is_read_right_by_evo(tmp_path):
    from evo.tools import file_interface

    rec = make_result(n=5)
    rec.poses[:] = _random_poses(5)  # arbitrary rotations, so that a layout mix-up cannot go unnoticed
    folder = io.save_result(rec, tmp_path / "seq", glb=False, depth_gif=False)
    traj = file_interface.read_tum_trajectory_file(str(folder / io.TRAJ_TUM_FILE))
    np.testing.assert_allclose(np.stack(traj.poses_se3), rec.poses, atol=1e-9)
    np.testing.assert_allclose(traj.timestamps, np.arange(5.0))
    assert (traj.orientations_quat_wxyz[:, 0] >= 0).all()
    # the pitfall the TUM copy exists for: evo's TUM reader parses the w-first pred_traj.txt without a warning,
    # and every orientation comes out wrong
    wrong = file_interface.read_tum_trajectory_file(str(folder / io.TRAJ_FILE))
    assert _rot_err_deg(np.stack(wrong.poses_se3), rec.poses).min() > 5
    # the w-first file is unchanged (the original's tools read it)
    np.testing.assert_allclose(read_trajectory(folder / io.TRAJ_FILE, "pred_traj")[0], rec.poses, atol=1e-9)


def test_both_layouts_round_trip_and_are_never_guessed(tmp_path):
    c2w = _random_poses()
    stamps = np.arange(len(c2w)) * 0.25 + 100
    for layout in ("pred_traj", "tum"):
        write_trajectory(tmp_path / f"{layout}.txt", c2w, layout, stamps)
        got, ts = read_trajectory(tmp_path / f"{layout}.txt", layout)
        np.testing.assert_allclose(got, c2w, atol=1e-12)
        np.testing.assert_array_equal(ts, stamps)
    # reading one layout as the other gives wrong rotations: the caller must say which it is
    wrong, _ = read_trajectory(tmp_path / "tum.txt", "pred_traj")
    assert _rot_err_deg(wrong, c2w).min() > 5
    with pytest.raises(TypeError):
        read_trajectory(tmp_path / "tum.txt")  # no default layout
    with pytest.raises(ValueError, match="unknown trajectory layout"):
        read_trajectory(tmp_path / "tum.txt", "auto")
    # the original's writer's exact text (golden in test_optimizer.py) is the pred_traj layout
    assert io.format_tum_lines(c2w) == format_trajectory(c2w, "pred_traj")


def test_eval_trajectory_loaders_name_the_layout(tmp_path):
    from monst3r.eval.trajectory import load_traj, tum_rows_to_c2w

    c2w = _random_poses()
    write_trajectory(tmp_path / "a.txt", c2w, "pred_traj")
    write_trajectory(tmp_path / "b.txt", c2w, "tum")
    rows_a, _ = load_traj(tmp_path / "a.txt", traj_format="pred_traj")
    rows_b, _ = load_traj(tmp_path / "b.txt", traj_format="tum")
    np.testing.assert_allclose(tum_rows_to_c2w(rows_a), c2w, atol=1e-9)
    np.testing.assert_allclose(tum_rows_to_c2w(rows_b), c2w, atol=1e-9)


@pytest.mark.parametrize("text, needle", [
    ("", "holds no poses"),
    ("0 1 2 3 1 0 0\n", "7 numbers, expected 8"),
    ("a b c d e f g h\n", "not a trajectory file"),
    ("0 0 0 0 nan 0 0 1\n", "non-finite"),
    ("0 0 0 0 0 0 0 0\n", "zero quaternion"),
])
def test_malformed_trajectory_files_are_input_errors(tmp_path, text, needle):
    (tmp_path / "t.txt").write_text(text)
    for layout in ("pred_traj", "tum"):
        with pytest.raises(Monst3rInputError, match=needle):
            read_trajectory(tmp_path / "t.txt", layout)


def test_load_result_reads_either_trajectory_and_refuses_disagreement(tmp_path):
    rec = make_result(n=4)
    folder = io.save_result(rec, tmp_path / "seq", glb=False, depth_gif=False)
    np.testing.assert_allclose(io.load_result(folder).poses, rec.poses, atol=1e-9)
    # a folder with the standard file only (e.g. the w-first one removed)
    (folder / io.TRAJ_FILE).unlink()
    np.testing.assert_allclose(io.load_result(folder).poses, rec.poses, atol=1e-9)
    # both present but different: an error, not a silent preference
    shifted = rec.poses.copy()
    shifted[:, 0, 3] += 1.0
    io.write_tum_poses(shifted, folder / io.TRAJ_FILE)
    with pytest.raises(Monst3rInputError, match="different poses"):
        io.load_result(folder)


def test_synthetic_gt_traj_is_standard_tum(tmp_path):
    from evo.tools import file_interface

    from monst3r.datasets.synthetic import main as synth_main

    synth_main(["--out", str(tmp_path / "s"), "--frames", "3", "--size", "64x48", "--seed", "2"]) == 0
    poses = np.load(tmp_path / "s" / "poses.npy")
    traj = file_interface.read_tum_trajectory_file(str(tmp_path / "s" / "gt_traj.txt"))
    np.testing.assert_allclose(np.stack(traj.poses_se3), poses, atol=1e-6)
    np.testing.assert_allclose(read_trajectory(tmp_path / "s" / "gt_traj.txt", "tum")[0], poses, atol=1e-6)


def test_colmap_export_read_by_pycolmap(tmp_path):
    pycolmap = pytest.importorskip("pycolmap")
    rec = make_result(n=3, H=12, W=16)
    rec.poses[:] = _random_poses(3)
    rec.intrinsics[:, 0, 0], rec.intrinsics[:, 1, 1] = 21.0, 19.0
    rec.intrinsics[:, 0, 2], rec.intrinsics[:, 1, 2] = 7.25, 6.5
    folder = io.export_colmap(rec, tmp_path / "colmap", max_points_per_frame=40)
    model = pycolmap.Reconstruction(str(folder))
    assert model.num_images() == 3 and model.num_cameras() == 3 and model.num_points3D() > 0
    by_name = {im.name: im for im in model.images.values()}
    for k in range(3):
        im = by_name[io.RGB_PATTERN.format(k)]
        np.testing.assert_allclose(im.projection_center(), rec.poses[k][:3, 3], atol=1e-6)
        cam = im.camera
        assert (cam.width, cam.height) == (16, 12) and cam.model_name == "PINHOLE"
        # COLMAP puts pixel centres at +0.5; ours at integer coordinates
        np.testing.assert_allclose(cam.params, [21.0, 19.0, 7.75, 7.0], atol=1e-5)
    # every 3-D point reprojects onto its observation (pose, intrinsics and the pixel convention together)
    errs = []
    for pid, pt in model.points3D.items():
        for el in pt.track.elements:
            im = model.images[el.image_id]
            uv = np.asarray(im.project_point(pt.xyz))
            errs.append(np.linalg.norm(uv - np.asarray(im.points2D[el.point2D_idx].xy)))
    assert max(errs) < 1e-3
