"""Result folders never lose or mix data (monst3r.io.result_folder, the one write policy of every writer).

Every case checks the exit code, the one-line message and the disk afterwards: sentinel files of the user in the
parent of --output_dir, in --output_dir, inside an old result folder, and behind a symbolic link to an outside
folder must survive; no hidden temporary may be left behind. The demo runs in-process (``demo.main``) except for
the interruption cases, which need a real process killed with SIGKILL / SIGTERM.
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import demo
from monst3r import io

ROOT = Path(__file__).resolve().parents[1]
USER = {"notes.md": "mine", "sub/keep.txt": "keep me"}


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    from synthetic_fixtures import write_frames

    out = write_frames(tmp_path_factory.mktemp("frames"), num_frames=4)
    return sorted(out.glob("*.png"))


@pytest.fixture
def weights(golden):
    return str(golden("model", "tiny_linear", "tiny_linear.pth"))


@pytest.fixture
def world(tmp_path):
    """parent/ (sentinel) > out/ (sentinel; the --output_dir), outside/ (sentinel; the target of links)."""
    parent = tmp_path / "parent"
    out = parent / "out"
    outside = tmp_path / "outside"
    for d in (out, outside):
        d.mkdir(parents=True)
    (parent / "parent_sentinel.txt").write_text("p")
    (out / "out_sentinel.txt").write_text("o")
    (outside / "outside_sentinel.txt").write_text("x")
    return dict(parent=parent, out=out, outside=outside)


def check_world(w):
    assert (w["parent"] / "parent_sentinel.txt").read_text() == "p"
    assert (w["out"] / "out_sentinel.txt").read_text() == "o"
    assert (w["outside"] / "outside_sentinel.txt").read_text() == "x"
    assert sorted(p.name for p in w["outside"].iterdir()) == ["outside_sentinel.txt"]
    leftovers = [p for d in (w["parent"], w["out"]) for p in d.rglob(".*") if "tmp" in p.name or "monst3r-" in p.name]
    assert not leftovers, leftovers


def add_user_files(folder: Path, outside: Path):
    for rel, text in USER.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(text)
    os.symlink(outside, folder / "link_out")


def check_user_files(folder: Path):
    for rel, text in USER.items():
        assert (folder / rel).read_text() == text
    assert (folder / "link_out").is_symlink() and (folder / "link_out" / "outside_sentinel.txt").exists()


def run_main(argv, capsys):
    old = signal.getsignal(signal.SIGTERM)
    try:
        rc = demo.main([str(a) for a in argv])
    finally:
        signal.signal(signal.SIGTERM, old)
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def one_line_error(rc, err, needle=""):
    assert rc == 2, err[-2000:]
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), err[-2000:]
    assert "Traceback" not in err and needle in lines[0], lines[0]


def base(weights, out, seq="seq"):
    return ["--output_dir", out, "--seq_name", seq, "--weights", weights, "--image_size", "224", "--niter", "2",
            "--flow_loss_weight", "0", "--device", "cpu", "--silent"]


# ------------------------------------------------------------------------------------- --seq_name escapes


@pytest.mark.parametrize("seq", ["..", ".", "", "   ", "/abs/path", "../x", "a/../../x", "a/../..", "./", "link",
                                 "link/sub", "afile"])
def test_seq_name_outside_output_dir_is_refused_before_work(world, frames, weights, capsys, seq):
    os.symlink(world["outside"], world["out"] / "link")
    (world["out"] / "afile").write_text("a file")
    # --weights does not exist: the seq_name error must come first (nothing else is looked at)
    argv = ["--input", *frames[:3], "--real_time", *base("/nonexistent/w.pth", world["out"], seq)]
    rc, _, err = run_main(argv, capsys)
    one_line_error(rc, err, "seq_name" if seq != "afile" else "not a folder")
    check_world(world)
    assert (world["out"] / "afile").read_text() == "a file" and (world["out"] / "link").is_symlink()
    assert sorted(p.name for p in world["out"].iterdir()) == ["afile", "link", "out_sentinel.txt"]


def test_result_folder_that_is_a_link_is_refused(tmp_path, world):
    os.symlink(world["outside"], world["out"] / "seq")
    with pytest.raises(io.Monst3rInputError, match="symbolic link"):
        with io.result_folder(world["out"] / "seq") as tmp:
            (tmp / "x").write_text("x")
    check_world(world)


# ------------------------------------------------------------------ re-runs replace ours and keep the user's


def _names(folder):
    return {p.name for p in folder.iterdir()}


def _two_runs(world, capsys, first, second):
    seq = world["out"] / "seq"
    rc, out, err = run_main(first, capsys)
    assert rc == 0, err[-3000:]
    add_user_files(seq, world["outside"])
    rc, out, err = run_main(second, capsys)
    assert rc == 0, err[-3000:]
    check_user_files(seq)
    check_world(world)
    manifest = json.loads((seq / io.MANIFEST_FILE).read_text())["entries"]
    assert not any(e.startswith(("notes", "sub", "link")) for e in manifest)
    return seq


@pytest.mark.slow
def test_rerun_optimizer_with_exports_then_fewer_frames(world, frames, weights, capsys):
    b = base(weights, world["out"])
    seq = _two_runs(world, capsys, ["--input", *frames, "--export", "ply,colmap", *b], ["--input", *frames[:3], *b])
    names = _names(seq)
    assert "ply" not in names and "colmap" not in names  # the previous run's exports are replaced (gone)
    assert "frame_0003.npy" not in names and "frame_0002.npy" in names and "pred_traj.txt" in names
    assert io.load_result(seq).n_frames == 3


def test_rerun_real_time(world, frames, weights, capsys):
    b = base(weights, world["out"]) + ["--real_time"]
    seq = _two_runs(world, capsys, ["--input", *frames, *b], ["--input", *frames[:3], *b])
    names = _names(seq)
    assert "pts3d1_p2.npy" in names and "pts3d1_p3.npy" not in names


@pytest.mark.slow
def test_rerun_window_wise_and_streaming(world, frames, weights, capsys):
    b = base(weights, world["out"])
    seq = _two_runs(world, capsys, ["--input", *frames, "--window_wise", "--window_size", "2", *b],
                    ["--input", *frames, "--streaming", "--window_size", "3", "--export", "colmap", *b])
    assert io.load_result(seq).n_frames == 4 and (seq / "colmap" / "cameras.txt").exists()


class _ZeroFlow(torch.nn.Module):
    """Stand-in for RAFT-things (its weights are not in the repository): zero flow."""

    def __init__(self):
        super().__init__()
        self.p = torch.nn.Parameter(torch.zeros(1))

    def forward(self, img1, img2, iters=20, test_mode=True):
        return None, torch.zeros(img1.shape[0], 2, *img1.shape[-2:])


def test_rerun_two_frames_writes_extras_inside_the_result_folder(world, frames, weights, capsys, monkeypatch):
    import third_party.raft

    import monst3r.two_frame as tf

    monkeypatch.setattr(third_party.raft, "load_flow_model", lambda name, device: _ZeroFlow())
    # the tiny random network gives degenerate pair cameras: a stand-in motion mask (the writing is under test)
    z = np.zeros((224, 224), np.float32)
    monkeypatch.setattr(tf, "two_frame_motion_mask", lambda result, net: dict(
        error=z, normalized=z, binary=z > 0, error_bw=z, normalized_bw=z, binary_bw=z > 0,
        flow=np.zeros((224, 224, 2), np.float32), flow_bw=np.zeros((224, 224, 2), np.float32)))
    FILES = tf.FILES

    b = base(weights, world["out"])
    seq = _two_runs(world, capsys, ["--input", *frames[:2], "--export", "ply", *b], ["--input", *frames[2:], *b])
    assert set(FILES) <= _names(seq) and "ply" not in _names(seq)
    # nothing outside the result folder: the original wrote these into --output_dir
    assert _names(world["out"]) == {"seq", "out_sentinel.txt"}


def test_rerun_synthetic_scene_cli(world):
    from monst3r.datasets.synthetic import main as synth_main

    out = world["out"] / "scene"
    assert synth_main(["--out", str(out), "--frames", "3", "--size", "64x48"]) == 0
    add_user_files(out, world["outside"])
    (out / "depth" / "my_depth_notes.txt").write_text("inside one of our sub-folders")
    assert synth_main(["--out", str(out), "--frames", "2", "--size", "64x48", "--overwrite"]) == 0
    check_user_files(out)
    assert (out / "depth" / "my_depth_notes.txt").exists() and not (out / "depth" / "00002.npy").exists()
    assert sorted(p.name for p in out.glob("*.png")) == ["00000.png", "00001.png"]
    check_world(world)


@pytest.mark.slow
def test_rerun_pose_evaluation_writer(world):
    from monst3r.eval import pose
    from synthetic_fixtures import IdealPairModel, write_sintel_fixture
    from test_eval_pose import parse_launch_args

    root = world["parent"] / "evalset"
    index = write_sintel_fixture(root, {"alley_2": dict(width=64, height=48, num_frames=6, seed=1)})
    args = parse_launch_args(["--mode=eval_pose", "--eval_dataset=sintel", f"--output_dir={world['out']}",
                              f"--eval_data_root={root}", "--seq_list", "alley_2", "--eval_image_size", "64",
                              "--pose_eval_stride", "1", "--n_iter", "5", "--flow_loss_weight", "0", "--device",
                              "cpu", "--silent"])
    pose.main(args, model=IdealPairModel(index))
    seq = world["out"] / "alley_2"
    assert (seq / "pred_focal.txt").exists()
    add_user_files(seq, world["outside"])
    pose.main(args, model=IdealPairModel(index))
    check_user_files(seq)
    assert (seq / "pred_traj.txt").exists()
    check_world(world)
    # the evaluation discards the previous run's files before it starts again: user files stay
    io.discard_result(seq)
    assert _names(seq) == {"notes.md", "sub", "link_out"}
    check_user_files(seq)


@pytest.mark.slow
def test_gui_run_goes_through_the_same_policy(world, frames, weights):
    pytest.importorskip("gradio")
    from monst3r.gui import build_app

    args = demo.get_parser().parse_args([str(a) for a in base(weights, world["out"])] + ["--input", "x"])
    app = build_app(args)
    run = next(f.fn for f in (app.fns.values() if isinstance(app.fns, dict) else app.fns)
               if getattr(f, "fn", None) is not None and f.fn.__name__ == "run")
    gui = ([str(p) for p in frames[:3]], "seq", "swinstride", 2, 0, 2, "linear", 1.1, 0.01, "1.0", True, 0, 0.1, 25,
           0, 10)
    run(*gui)
    seq = world["out"] / "seq"
    add_user_files(seq, world["outside"])
    glb, gallery, downloads, status = run(*gui)
    assert len(gallery) == 3 and glb.endswith("scene.glb") and "Done: 3 frames" in status
    assert any(d.endswith("seq.zip") for d in downloads)
    assert sorted(p.name for p in world["out"].iterdir()) == ["out_sentinel.txt", "seq"]  # no zip beside the result
    check_user_files(seq)
    check_world(world)


# --------------------------------------------------------------------------------- errors before the work


def test_export_typo_fails_before_work_and_keeps_the_old_result(world, frames, weights, capsys):
    seq = world["out"] / "seq"
    seq.mkdir()
    (seq / "pred_traj.txt").write_text("old")
    rc, _, err = run_main(["--input", *frames[:3], "--export", "ply,foo", *base("/nonexistent/w.pth", world["out"])],
                          capsys)
    one_line_error(rc, err, "--export 'foo'")
    assert (seq / "pred_traj.txt").read_text() == "old" and _names(seq) == {"pred_traj.txt"}
    check_world(world)


def _chattr(flag, path):
    return subprocess.run(["chattr", flag, str(path)], capture_output=True).returncode == 0


@pytest.mark.parametrize("what", ["old_result", "old_result_file", "old_result_nested_file", "output_dir"])
def test_immutable_targets_fail_before_work(world, frames, capsys, what):
    seq = world["out"] / "seq"
    (seq / "ply").mkdir(parents=True)
    (seq / "pred_traj.txt").write_text("old")
    (seq / "ply" / "frame_0000.ply").write_text("old ply")
    target = {"old_result": seq, "old_result_file": seq / "pred_traj.txt", "output_dir": world["out"],
              "old_result_nested_file": seq / "ply" / "frame_0000.ply"}[what]
    if not _chattr("+i", target):
        pytest.skip("chattr +i does not work in this sandbox")
    try:
        rc, _, err = run_main(["--input", *frames[:3], *base("/nonexistent/w.pth", world["out"])], capsys)
    finally:
        _chattr("-i", target)
    one_line_error(rc, err, "cannot")
    assert (seq / "pred_traj.txt").read_text() == "old"
    check_world(world)


def test_read_only_by_permissions(world, frames, capsys):
    if os.geteuid() == 0:
        pytest.skip("running as root: permission bits do not stop root (the immutable cases cover it)")
    os.chmod(world["out"], 0o555)
    try:
        rc, _, err = run_main(["--input", *frames[:3], *base("/nonexistent/w.pth", world["out"])], capsys)
    finally:
        os.chmod(world["out"], 0o755)
    one_line_error(rc, err, "cannot write")


def test_output_dir_is_a_file(world, frames, capsys):
    (world["out"] / "f").write_text("f")
    rc, _, err = run_main(["--input", *frames[:3], *base("/nonexistent/w.pth", world["out"] / "f")], capsys)
    one_line_error(rc, err, "cannot write")
    assert (world["out"] / "f").read_text() == "f"


# --------------------------------------------------------------------------------------- interruptions


def _spawn(argv, env=None):
    e = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", **(env or {}))
    return subprocess.Popen([sys.executable, str(ROOT / "demo.py"), *map(str, argv)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=e, cwd=ROOT)


def _wait_for(path: Path, proc, timeout=300):
    t0 = time.monotonic()
    while not path.exists():
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() - t0 < timeout, "the write was never reached"
        time.sleep(0.05)


@pytest.fixture
def previous(world, frames, weights, capsys):
    """A complete earlier real-time result with the user's files in it."""
    b = base(weights, world["out"]) + ["--real_time"]
    rc, _, err = run_main(["--input", *frames, *b], capsys)
    assert rc == 0, err
    seq = world["out"] / "seq"
    snapshot = {p.name: p.read_bytes() for p in seq.iterdir() if p.is_file() and not p.is_symlink()}
    add_user_files(seq, world["outside"])
    return seq, snapshot, b


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["build", "moved", "swapped"])
def test_sigkill_during_the_write_then_next_run(world, frames, capsys, previous, stage):
    seq, snapshot, b = previous
    flag = world["parent"].parent / "reached"
    proc = _spawn(["--input", *frames[:3], *b], env={"MONST3R_TEST_PAUSE": f"{stage}:{flag}"})
    _wait_for(flag, proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    hidden = [p for p in seq.parent.iterdir() if p.name.startswith(".seq.monst3r-tmp-")]
    assert len(hidden) == 1  # what the killed run left
    if stage == "swapped":  # killed after the atomic swap: the new result is complete, the old one is aside
        assert "pts3d1_p3.npy" not in _names(seq)
        check_user_files(seq)
    else:  # killed before the swap: the previous result is exactly as it was
        for name, data in snapshot.items():
            assert (seq / name).read_bytes() == data
    # a live process's temporary and a look-alike that is not provably ours are never touched
    live = seq.parent / f".seq.monst3r-tmp-{os.getpid()}-0123abcd"
    live.mkdir()
    (live / "x").write_text("x")
    alike = seq.parent / ".seq.tmp-notours"
    alike.mkdir()
    rc, _, err = run_main(["--input", *frames[:3], *b], capsys)  # the next run cleans up and writes
    assert rc == 0, err
    assert (live / "x").exists() and alike.exists()
    live.joinpath("x").unlink()
    live.rmdir()
    alike.rmdir()
    check_user_files(seq)
    assert "pts3d1_p2.npy" in _names(seq) and "pts3d1_p3.npy" not in _names(seq)
    check_world(world)


@pytest.mark.slow
def test_sigterm_during_the_write_is_like_ctrl_c(world, frames, previous):
    seq, snapshot, b = previous
    flag = world["parent"].parent / "reached"
    proc = _spawn(["--input", *frames[:3], *b], env={"MONST3R_TEST_PAUSE": f"moved:{flag}"})
    _wait_for(flag, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143 and "Traceback" not in err and "terminated" in err, err[-2000:]
    for name, data in snapshot.items():
        assert (seq / name).read_bytes() == data
    check_user_files(seq)  # moved back into the old folder by the clean-up
    check_world(world)


def test_stale_temporary_with_user_files_is_given_back(world, previous, frames, capsys):
    """A temporary of a dead process that holds a user entry (killed while moving): the entry goes back."""
    seq, snapshot, b = previous
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = seq.parent / f".seq.monst3r-tmp-{int(dead.stdout)}-0badc0de"
    stale.mkdir()
    (stale / "conf1_p0.npy").write_text("new, half written")
    (stale / io.MANIFEST_FILE).write_text(json.dumps({"entries": ["conf1_p0.npy"]}))
    (seq / "notes.md").rename(stale / "notes.md")
    io.recover_stale(seq)
    assert not stale.exists()
    check_user_files(seq)
    assert (seq / "conf1_p0.npy").read_bytes() == snapshot["conf1_p0.npy"]
    check_world(world)


def test_write_error_leaves_the_previous_result(world, monkeypatch):
    rec_dir = world["out"] / "seq"
    with io.result_folder(rec_dir) as tmp:
        (tmp / "pred_traj.txt").write_text("v1")
    add_user_files(rec_dir, world["outside"])

    with pytest.raises(io.Monst3rInputError, match="No space left"):
        with io.result_folder(rec_dir) as tmp:
            (tmp / "pred_traj.txt").write_text("v2")
            raise OSError(28, "No space left on device")
    assert (rec_dir / "pred_traj.txt").read_text() == "v1"
    check_user_files(rec_dir)
    check_world(world)
    # a user file with the name of a new result file: refused, nothing changed
    (rec_dir / "scene.glb").write_text("user's own glb")
    with pytest.raises(io.Monst3rInputError, match="not written by monst3r"):
        with io.result_folder(rec_dir) as tmp:
            (tmp / "scene.glb").write_text("ours")
    assert (rec_dir / "scene.glb").read_text() == "user's own glb"
    check_user_files(rec_dir)
    check_world(world)


def test_depth_evaluation_files_never_write_through_links(world):
    """The depth evaluation adds files one by one to folders shared by ranks: each file is replaced atomically
    (a link is replaced, not followed) and nothing else is touched."""
    from monst3r.eval.depth import save_depth

    folder = world["out"] / "kitti_seq"
    folder.mkdir()
    (folder / "notes.md").write_text("mine")
    os.symlink(world["outside"] / "outside_sentinel.txt", folder / "00000depth.npy")
    save_depth(np.ones((4, 5), np.float32), folder, "/data/00000.png")
    assert not (folder / "00000depth.npy").is_symlink() and np.load(folder / "00000depth.npy").shape == (4, 5)
    assert _names(folder) == {"notes.md", "00000depth.npy", "00000depth.png"}
    check_world(world)


def test_foreign_folder_with_result_names_is_refused_before_work(world, frames, capsys):
    """A folder the user made (no manifest, no result signature) holding their own frame_0000.png: nothing in it
    is ours, so nothing may be overwritten -- refused before the work."""
    seq = world["out"] / "seq"
    seq.mkdir()
    (seq / "frame_0000.png").write_bytes(b"user's picture")
    (seq / "readme.txt").write_text("r")
    rc, _, err = run_main(["--input", *frames[:3], *base("/nonexistent/w.pth", world["out"])], capsys)
    one_line_error(rc, err, "was not written by monst3r")
    assert (seq / "frame_0000.png").read_bytes() == b"user's picture" and _names(seq) == {"frame_0000.png",
                                                                                         "readme.txt"}
    check_world(world)
    # a folder of the original (no manifest, but its pred_traj.txt): its result files are replaced
    (seq / "frame_0000.png").unlink()
    with io.result_folder(seq) as tmp:
        (tmp / "pred_traj.txt").write_text("ours")
    (seq / io.MANIFEST_FILE).unlink()  # as if the original had written it
    (seq / "frame_0007.png").write_bytes(b"old result")
    with io.result_folder(seq) as tmp:
        (tmp / "pred_traj.txt").write_text("new")
    assert _names(seq) == {"pred_traj.txt", "readme.txt", io.MANIFEST_FILE}


@pytest.mark.parametrize("out", [".", "..", "sub/..", "/"])
def test_synthetic_cli_refuses_current_parent_or_root(world, out, monkeypatch, capsys):
    from monst3r.datasets.synthetic import main as synth_main

    monkeypatch.chdir(world["out"])
    assert synth_main(["--out", out, "--frames", "2", "--size", "64x48", "--overwrite"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:")
    check_world(world)
    assert _names(world["out"]) == {"out_sentinel.txt"}
