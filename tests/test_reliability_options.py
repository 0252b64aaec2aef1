"""Demo options: every bad value is one line ``error: ...`` (exit 2, no traceback) before any work, and no option
the user gave is silently ignored. Runs ``demo.main`` in-process with a --weights path that does not exist: an
option error must come first, so nothing is loaded and no result folder appears."""
import signal
from pathlib import Path

import numpy as np
import pytest

import demo
from monst3r.errors import Monst3rInputError
from monst3r.pipeline import parse_export, parse_intrinsics


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    from synthetic_fixtures import write_frames

    out = write_frames(tmp_path_factory.mktemp("frames"), num_frames=3)
    return out


@pytest.fixture(scope="module")
def files(tmp_path_factory, frames):
    """Intrinsics files, a second frame folder, a small video."""
    import cv2

    d = tmp_path_factory.mktemp("optfiles")
    k = {"k_nan.txt": "nan 0 112\n0 150 112\n0 0 1\n", "k_inf.txt": "inf 0 112 0 150 112 0 0 1",
         "k_zero.txt": "0 0 112\n0 150 112\n0 0 1\n", "k_negative.txt": "-150 0 112\n0 150 112\n0 0 1\n",
         "k_count.txt": "150 0 112\n0 150 112\n", "k_text.txt": "fx=150 fy=150\ncx=112 cy=112\n",
         "k_empty.txt": "", "k_skew.txt": "150 3 112\n0 150 112\n0 0 1\n",
         "k_pp_outside.txt": "150 0 5000\n0 150 112\n0 0 1\n", "k_ok.txt": "# K\n150 0 112\n0 150 112\n0 0 1\n"}
    for name, text in k.items():
        (d / name).write_text(text)
    (d / "k_binary.txt").write_bytes(np.arange(256, dtype=np.uint8).tobytes() * 4)
    (d / "k_npy.npy").write_bytes(b"\x93NUMPY\x01\x00" + b"\x00" * 100)
    (d / "k_folder").mkdir()
    other = d / "frames2"
    other.mkdir()
    for p in sorted(frames.glob("*.png")):
        (other / p.name).write_bytes(p.read_bytes())
    video = d / "clip.avi"
    w = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (128, 96))
    for p in sorted(frames.glob("*.png")):
        w.write(cv2.imread(str(p)))
    w.release()
    (d / "masks").mkdir()
    bad = d / "bad_prev"  # a result folder with malformed files
    bad.mkdir()
    (bad / "pred_traj.txt").write_text("0 0 0 nonsense\n")
    (bad / "pred_intrinsics.txt").write_text("1 2 3\n")
    for k in range(3):
        (bad / f"frame_{k:04d}.png").write_bytes((frames / f"{k:05d}.png").read_bytes())
        np.save(bad / f"frame_{k:04d}.npy", np.ones((96, 128), np.float32))
    return d


def run(argv, capsys):
    old = signal.getsignal(signal.SIGTERM)
    try:
        rc = demo.main([str(a) for a in argv])
    except SystemExit as exc:  # argparse's own errors
        rc = exc.code
    finally:
        signal.signal(signal.SIGTERM, old)
    return rc, capsys.readouterr().err


CASES = {
    # numbers: negative / zero / out of range / not finite
    "num_frames_0": (["--num_frames", "0"], "--num_frames"),
    "num_frames_neg": (["--num_frames", "-5"], "--num_frames"),
    "winsize_0": (["--winsize", "0"], "--winsize"),
    "niter_neg": (["--niter", "-1"], "--niter"),
    "niter_0": (["--niter", "0"], "--niter"),
    "fps_neg": (["--fps", "-2"], "--fps"),
    "fps_nan": (["--fps", "nan"], "--fps"),
    "batch_size_0": (["--batch_size", "0"], "--batch_size"),
    "window_size_0": (["--window_size", "0", "--window_wise"], "--window_size"),
    "overlap_1": (["--window_overlap_ratio", "1"], "--window_overlap_ratio"),
    "overlap_neg": (["--window_overlap_ratio", "-0.1"], "--window_overlap_ratio"),
    "min_conf_neg": (["--min_conf_thr", "-1"], "--min_conf_thr"),
    "min_conf_inf": (["--min_conf_thr", "inf"], "--min_conf_thr"),
    "tsw_neg": (["--temporal_smoothing_weight", "-0.01"], "--temporal_smoothing_weight"),
    "tw_neg": (["--translation_weight", "-1"], "--translation_weight"),
    "flow_w_neg": (["--flow_loss_weight", "-0.1"], "--flow_loss_weight"),
    "flow_w_nan": (["--flow_loss_weight", "nan"], "--flow_loss_weight"),
    "flow_thr_neg": (["--flow_loss_threshold", "-3"], "--flow_loss_threshold"),
    "refid_neg": (["--refid", "-1"], "--refid"),
    "prev_index_neg": (["--window_wise", "--prev_output_dir", "{frames}", "--prev_output_index", "-1"],
                       "--prev_output_index"),
    "int_text": (["--num_frames", "many"], "--num_frames"),
    # exports
    "export_typo": (["--export", "foo"], "--export 'foo'"),
    "export_one_bad": (["--export", "ply,obj"], "--export 'obj'"),
    "export_empty": (["--export", ","], "--export is empty"),
    # options that would be ignored
    "rt_export": (["--real_time", "--export", "ply"], "--export is not used by --real_time"),
    "rt_intrinsics": (["--real_time", "--intrinsics", "150"], "--intrinsics is not used by --real_time"),
    "rt_masks": (["--real_time", "--dynamic_masks", "{files}/masks"], "--dynamic_masks is not used by"),
    "rt_window": (["--real_time", "--window_wise"], "--window_wise is not used by --real_time"),
    "rt_not_batchify": (["--real_time", "--not_batchify"], "--not_batchify is not used by --real_time"),
    "flow_weights_unused": (["--flow_loss_weight", "0", "--flow_weights", "{files}/k_ok.txt"], "not used with"),
    "sam2_missing": (["--sam2_checkpoint", "/nonexistent/sam2.pt"], "--sam2_checkpoint"),
    "sam2_and_no_sam2": (["--sam2_checkpoint", "{files}/k_ok.txt", "--no_sam2"], "contradict"),
    "prev_missing": (["--window_wise", "--prev_output_dir", "/nonexistent/prev"], "is not a folder"),
    "prev_not_a_result": (["--window_wise", "--prev_output_dir", "{files}"], "is not a result folder"),
    "prev_malformed": (["--streaming", "--window_size", "3", "--prev_output_dir", "{files}/bad_prev"],
                       "cannot read the previous result"),
    "input_not_an_image": (["--input", "{frames}/00000.png", "{files}/k_ok.txt"], "is not an image"),
    "server_port": (["--server_port", "70000"], "--server_port"),
    "window_size_1": (["--window_size", "1", "--window_wise"], "--window_size"),
    "prev_without_mode": (["--prev_output_dir", "{frames}"], "only used with --window_wise or --streaming"),
    "davis_without_seq": (["--use_gt_davis_masks", "--seq_name", "NULL"], "--seq_name <DAVIS sequence>"),
    # --input forms
    "two_folders": (["--input", "{frames}", "{files}/frames2"], "one folder of frames, one video file"),
    "folder_and_file": (["--input", "{frames}", "{frames}/00000.png"], "is a folder"),
    "video_and_files": (["--input", "{files}/clip.avi", "{frames}/00000.png"], "is a video"),
    "masks_with_video": (["--input", "{files}/clip.avi", "--dynamic_masks", "{files}/masks"], "is a video"),
    "masks_not_a_folder": (["--dynamic_masks", "{files}/k_ok.txt"], "is not a folder"),
    # --intrinsics values (command line)
    "k_nan": (["--intrinsics", "nan"], "finite"),
    "k_inf": (["--intrinsics", "inf,150,112,112"], "finite"),
    "k_zero": (["--intrinsics", "0"], "positive"),
    "k_neg": (["--intrinsics", "-150"], "positive"),
    "k_neg_pp": (["--intrinsics", "150,150,-1,112"], "positive"),
    "k_count": (["--intrinsics", "150,150,112"], "3 numbers"),
    "k_text": (["--intrinsics", "abc"], "not a number"),
    "k_empty": (["--intrinsics", ""], "--intrinsics is empty"),
    "k_missing_file": (["--intrinsics", "/nonexistent/K.txt"], "does not exist"),
    "k_pp_outside_image": (["--intrinsics", "150,150,500,112"], "outside the 224x224"),
    # --intrinsics files
    "kf_nan": (["--intrinsics", "{files}/k_nan.txt"], "finite"),
    "kf_inf": (["--intrinsics", "{files}/k_inf.txt"], "finite"),
    "kf_zero": (["--intrinsics", "{files}/k_zero.txt"], "positive"),
    "kf_negative": (["--intrinsics", "{files}/k_negative.txt"], "positive"),
    "kf_count": (["--intrinsics", "{files}/k_count.txt"], "9 numbers"),
    "kf_text": (["--intrinsics", "{files}/k_text.txt"], "not a number"),
    "kf_empty": (["--intrinsics", "{files}/k_empty.txt"], "found 0"),
    "kf_binary": (["--intrinsics", "{files}/k_binary.txt"], "not a small text file"),
    "kf_npy": (["--intrinsics", "{files}/k_npy.npy"], "not a small text file"),
    "kf_folder": (["--intrinsics", "{files}/k_folder"], "is not a file"),
    "kf_skew": (["--intrinsics", "{files}/k_skew.txt"], "no skew"),
    "kf_pp_outside": (["--intrinsics", "{files}/k_pp_outside.txt"], "outside the 224x224"),
    # mode-dependent, after the frames are counted (two frames: no optimisation)
    "two_frames_intrinsics": (["--input", "{frames}/00000.png", "{frames}/00001.png", "--intrinsics", "150"],
                              "not used with two frames"),
    "output_dir_empty": (["--output_dir", ""], "--output_dir is empty"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_option_is_one_line_before_work(frames, files, tmp_path, capsys, case):
    extra, needle = CASES[case]
    extra = [a.format(frames=frames, files=files) for a in extra]
    out = tmp_path / "out"
    argv = ["--input", frames, "--output_dir", out, "--seq_name", "s", "--weights", "/nonexistent/w.pth",
            "--image_size", "224", "--device", "cpu", "--silent"]
    if "--input" in extra:  # replace the default input
        argv = argv[2:]
    if "--output_dir" in extra:
        i = argv.index("--output_dir")
        del argv[i:i + 2]
    rc, err = run(argv + extra, capsys)
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert rc == 2, err[-2000:]
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in err, err[-2000:]
    assert needle in lines[0], lines[0]
    assert "w.pth" not in lines[0]  # the option error came before the network was looked at
    assert not (out / "s").exists() and not list(tmp_path.rglob("pred_traj.txt"))


def test_good_intrinsics_forms(files):
    K = parse_intrinsics(str(files / "k_ok.txt"), 224, 224)
    np.testing.assert_allclose(K, [[150, 0, 112], [0, 150, 112], [0, 0, 1]])
    np.testing.assert_allclose(parse_intrinsics("150", 224, 160)[:2, 2], [112, 80])
    np.testing.assert_allclose(parse_intrinsics("150 140 100 90", 224, 224).diagonal(), [150, 140, 1])
    assert parse_intrinsics(None) is None
    assert parse_export("PLY, colmap,ply") == ["ply", "colmap"] and parse_export(None) == []
    with pytest.raises(Monst3rInputError):
        parse_intrinsics("1e400")


def test_existing_checks_still_work(frames, tmp_path, capsys):
    rc, err = run(["--input", frames, "--output_dir", tmp_path, "--scenegraph_type", "nope"], capsys)
    assert rc == 2 and err.count("\n") == 1 and "invalid choice" in err
    rc, err = run(["--input", tmp_path / "missing", "--output_dir", tmp_path, "--device", "cpu"], capsys)
    assert rc == 2 and "does not exist" in err and err.count("\n") == 1
