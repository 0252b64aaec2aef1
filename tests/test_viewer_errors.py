"""The viewer scripts given a bad input: one line ``error: ...`` on stderr, exit code 2, no traceback.

Each case damages a copy of a small valid result folder (written by ``save_result``) or real-time folder and runs
the script as a user would (a subprocess with ``--exit_after_build``, so a case that wrongly succeeds returns
instead of serving forever).
"""
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from server_helpers import free_port

ROOT = Path(__file__).resolve().parents[1]
VIEWER = ROOT / "viser" / "visualizer_monst3r.py"
REALTIME = ROOT / "viser" / "visualizer_monst3r_realtime.py"
N, H, W = 3, 24, 32


def _run(script: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(script), *args, "--exit_after_build", "--port", str(free_port())],
                          capture_output=True, text=True, cwd=ROOT, timeout=300,
                          env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})


def _damaged_copy(good: Path, folder: Path, case) -> tuple[Path, list]:
    """Copy of the ``good`` folder at ``folder`` damaged by ``case`` = (damage, needles); returns (folder, needles)."""
    damage, needles = case
    shutil.copytree(good, folder)
    damage(folder)
    return folder, needles


def _assert_one_error_line(proc: subprocess.CompletedProcess, *needles: str) -> str:
    err = proc.stderr.strip()
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout, proc.stderr
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert "viewer:" not in proc.stdout  # the scene was not served
    return lines[0]


@pytest.fixture(scope="module")
def good_folder(tmp_path_factory):
    from monst3r.io import save_result
    from monst3r.result import Reconstruction

    rng = np.random.default_rng(0)
    poses = np.stack([np.eye(4)] * N)
    poses[:, 0, 3] = np.arange(N) * 0.1
    K = np.array([[30.0, 0, W / 2], [0, 30.0, H / 2], [0, 0, 1]])
    res = Reconstruction(poses=poses, intrinsics=np.stack([K] * N), depths=1 + rng.random((N, H, W)),
                         confs=np.full((N, H, W), 5.0), init_confs=np.full((N, H, W), 5.0),
                         dynamic_masks=rng.random((N, H, W)) > 0.7, rgb=rng.random((N, H, W, 3)))
    return save_result(res, tmp_path_factory.mktemp("good") / "seq", glb=False, depth_gif=False)


@pytest.mark.slow
def test_good_folder_builds(good_folder):
    proc = _run(VIEWER, "--data", str(good_folder))
    assert proc.returncode == 0, proc.stderr
    assert f"viewer: {N} frames from {good_folder}" in proc.stdout and "scene scale 1;" in proc.stdout


def _traj_line(t, x="0", q="1 0 0 0"):
    return f"{t} {x} 0 0 {q}\n"


def _write(name, content):
    def damage(folder: Path):
        (folder / name).write_text(content)
    return damage


def _npy(name, value):
    def damage(folder: Path):
        if isinstance(value, bytes):
            (folder / name).write_bytes(value)
        else:
            np.save(folder / name, value)
    return damage


def _remove(name):
    return lambda folder: (folder / name).unlink()


CASES = {
    "traj_wrong_columns": (_write("pred_traj.txt", "0 1 2 3\n1 1 2 3\n2 1 2 3\n"), ["pred_traj.txt"]),
    "traj_text": (_write("pred_traj.txt", "this is not a trajectory\n"), ["pred_traj.txt"]),
    "traj_binary": (_npy("pred_traj.txt", b"\x00\xff\xfe binary"), ["pred_traj.txt"]),
    "traj_empty": (_write("pred_traj.txt", ""), ["pred_traj.txt"]),
    "traj_ragged": (_write("pred_traj.txt", _traj_line(0) + "1 0 0\n" + _traj_line(2)), ["pred_traj.txt"]),
    "zero_quaternion": (_write("pred_traj.txt", _traj_line(0) + _traj_line(1, q="0 0 0 0") + _traj_line(2)),
                        []),
    "nan_pose": (_write("pred_traj.txt", _traj_line(0) + _traj_line(1, x="nan") + _traj_line(2)),
                 # the reader (trajectory_io.read_trajectory) refuses it first, naming the file and the pose
                 ["pred_traj.txt", "pose 1 has non-finite numbers"]),
    "nan_quaternion": (_write("pred_traj.txt", _traj_line(0) + _traj_line(1) + _traj_line(2, q="nan 0 0 0")), []),
    "npy_garbage": (_npy("frame_0001.npy", b"\x93NUMPY garbage, not an array"), ["frame_0001.npy"]),
    "npy_pickled_object": (_npy("frame_0001.npy", np.array([{"a": 1}], dtype=object)), ["frame_0001.npy"]),
    "npy_wrong_shape_depth": (_npy("frame_0002.npy", np.ones((5,), np.float32)), ["frame"]),
    "npy_wrong_shape_conf": (_npy("conf_0.npy", np.ones((3, 3), np.float32)), ["conf"]),
    "npy_text_depth": (_npy("frame_0000.npy", np.array(["a", "b"])), ["frame_0000.npy"]),
    "missing_depth_frame": (_remove("frame_0002.npy"), ["3 poses but 2 depth maps"]),
    "bad_intrinsics": (_write("pred_intrinsics.txt", "1 2 3\n"), ["pred_intrinsics"]),
    "negative_focal": (_write("pred_intrinsics.txt", "-30 0 16 0 30 12 0 0 1\n" * N), ["invalid intrinsics"]),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CASES))
def test_damaged_result_folder(good_folder, tmp_path, case):
    folder, needles = _damaged_copy(good_folder, tmp_path / "seq", CASES[case])
    line = _assert_one_error_line(_run(VIEWER, "--data", str(folder)), *needles)
    assert str(folder) in line or any(n in line for n in ("frame", "conf", "pred_")), line


def test_path_is_a_file(good_folder):
    _assert_one_error_line(_run(VIEWER, "--data", str(good_folder / "pred_traj.txt")), "is a file")


def test_folder_without_a_result(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    _assert_one_error_line(_run(VIEWER, "--data", str(tmp_path)), "not a result folder", "pass --data")


def test_missing_folder_and_bad_scale(tmp_path, good_folder):
    _assert_one_error_line(_run(VIEWER, "--data", str(tmp_path / "nope")), "does not exist")
    _assert_one_error_line(_run(VIEWER, "--data", str(good_folder), "--scene_scale", "abc"), "--scene_scale")


# ---------------------------------------------------------------------------------------- real-time viewer
@pytest.fixture(scope="module")
def realtime_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("rt")
    rng = np.random.default_rng(1)
    for b in range(3):
        np.save(folder / f"pts3d2_p{b}.npy", np.concatenate([rng.random((H, W, 3)), rng.random((H, W, 3))], -1)
                .astype(np.float32))
        np.save(folder / f"conf2_p{b}.npy", np.full((H, W), 3.0, np.float32))
    return folder


def test_realtime_good_folder_builds(realtime_folder):
    proc = _run(REALTIME, "--data_path", str(realtime_folder))
    assert proc.returncode == 0, proc.stderr
    assert "viewer: 3 frames" in proc.stdout and "(scene scale 1)" in proc.stdout


RT_CASES = {
    "garbage_pts": (_npy("pts3d2_p1.npy", b"not numpy at all"), ["pts3d2_p1.npy"]),
    "wrong_shape_pts": (_npy("pts3d2_p0.npy", np.ones((H, W, 4), np.float32)), ["pts3d2_p0.npy", "[H, W, 6]"]),
    "pickled_pts": (_npy("pts3d2_p2.npy", np.array([None], dtype=object)), ["pts3d2_p2.npy"]),
    "wrong_shape_conf": (_npy("conf2_p1.npy", np.ones((H + 1, W), np.float32)), ["conf2_p1.npy"]),
    "no_points": (lambda f: [p.unlink() for p in f.glob("pts3d2_*.npy")], ["no pts3d2_p*.npy"]),
}


@pytest.mark.parametrize("case", sorted(RT_CASES))
def test_realtime_damaged_folder(realtime_folder, tmp_path, case):
    folder, needles = _damaged_copy(realtime_folder, tmp_path / "rt", RT_CASES[case])
    _assert_one_error_line(_run(REALTIME, "--data_path", str(folder)), *needles)


def test_realtime_bad_paths(tmp_path, realtime_folder):
    _assert_one_error_line(_run(REALTIME, "--data_path", str(tmp_path / "nope")), "does not exist")
    (tmp_path / "x.txt").write_text("x")
    _assert_one_error_line(_run(REALTIME, "--data_path", str(tmp_path / "x.txt")), "is a file")
    np.save(tmp_path / "bad.npy", np.ones((2, 5, 3), np.float32))
    _assert_one_error_line(_run(REALTIME, "--data_path", str(tmp_path / "bad.npy")), "[T, N, 6]")
