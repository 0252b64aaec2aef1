"""Reliability of the public metric functions: NaN instead of raising where documented, never a plausible score
for NaN/inf/empty inputs, clear ValueErrors for mismatched shapes; evaluation runs report failed sequences
(one ``warning:`` line) and exit 1 with one ``error:`` line when every sequence failed."""
import math
import warnings

import numpy as np
import pytest

from monst3r.eval.metrics import (DEPTH_METRIC_KEYS, depth_evaluation, evaluate_single_depth, evaluate_video_depth,
                                  parse_metric_text, pose_metrics, pose_metrics_c2w, weighted_depth_average)
from monst3r.eval.trajectory import c2w_to_tum_rows

ALIGNS = [dict(), dict(align_with_lad2=True, max_depth=None), dict(align_with_lstsq=True),
          dict(align_with_scale=True), dict(disp_input=True), dict(align_with_lad=True)]


def _traj(n=10, seed=0):
    rng = np.random.default_rng(seed)
    c2w = np.tile(np.eye(4), (n, 1, 1))
    c2w[:, :3, 3] = rng.normal(size=(n, 3))
    return c2w


def _poison(a, value, index=3):
    a = np.array(a, dtype=np.float64)
    a.reshape(-1)[index] = value
    return a


# ============================================================================ pose
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("which", ["pred", "gt"])
def test_pose_metrics_non_finite_is_degenerate_not_raising(value, which):
    gt = c2w_to_tum_rows(_traj())
    bad = _poison(gt, value)
    args = (bad, gt) if which == "pred" else (gt, bad)
    with pytest.warns(RuntimeWarning, match="non-finite"):
        res = pose_metrics(*args)
    assert res.degenerate and all(math.isnan(v) for v in res.as_tuple())


def test_pose_metrics_zero_quaternions_and_all_zero_rows():
    gt = c2w_to_tum_rows(_traj())
    zero_q = gt.copy()
    zero_q[:, 3:] = 0
    for pred in (zero_q, np.zeros_like(gt)):
        with pytest.warns(RuntimeWarning, match="zero-norm quaternion"):
            res = pose_metrics(pred, gt)
        assert res.degenerate and math.isnan(res.ate)


def test_pose_metrics_empty_and_timestamps():
    gt = c2w_to_tum_rows(_traj())
    with pytest.warns(RuntimeWarning, match="empty"):
        assert pose_metrics(np.zeros((0, 7)), gt).degenerate
    with pytest.warns(RuntimeWarning, match="non-finite"):
        assert pose_metrics(gt, gt, pred_timestamps=_poison(np.arange(10.0), np.nan), gt_timestamps=np.arange(10.0)
                            ).degenerate


@pytest.mark.parametrize("shape", [(14, 6), (10, 8), (7,) * 3, (10, 4, 4)])
def test_pose_metrics_wrong_layout_is_a_value_error_not_a_reshape(shape):
    with pytest.raises(ValueError, match=r"expected \[N, 7\] TUM rows"):
        pose_metrics(np.ones(shape), c2w_to_tum_rows(_traj()))


def test_pose_metrics_c2w():
    c2w = _traj()
    ok = pose_metrics_c2w(c2w, c2w)
    assert not ok.degenerate and ok.ate < 1e-9
    with pytest.warns(RuntimeWarning, match="non-finite"):
        assert pose_metrics_c2w(_poison(c2w, np.nan, 5), c2w).degenerate  # was LinAlgError
    with pytest.warns(RuntimeWarning, match="non-finite"):
        assert pose_metrics_c2w(c2w, _poison(c2w, np.inf, 0)).degenerate
    with pytest.raises(ValueError, match=r"expected \[N, 4, 4\]"):
        pose_metrics_c2w(c2w[:, :2], c2w)


def test_metric_text_with_nan_is_not_a_perfect_score():
    text = ("APE w.r.t. translation part (m)\n rmse\tnan\nRPE w.r.t. translation part (m)\n rmse\tinf\n"
            "RPE w.r.t. rotation angle in degrees (deg)\n rmse\t1.5e-01\n")
    parsed = parse_metric_text(text)
    assert math.isnan(parsed["ate"]) and math.isinf(parsed["rpe_trans"]) and parsed["rpe_rot_deg"] == 0.15


# ============================================================================ depth
def _depth(seed=0, shape=(2, 8, 8)):
    g = np.random.default_rng(seed).uniform(1, 10, shape).astype(np.float32)
    return g * 2, g


def _all_nan(metrics):
    return all(math.isnan(metrics[k]) for k in DEPTH_METRIC_KEYS)


@pytest.mark.parametrize("kw", ALIGNS, ids=lambda kw: next(iter(kw), "median"))
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("index", [5, None])  # one pixel / every pixel
def test_depth_non_finite_prediction_gives_nan(kw, value, index):
    p, g = _depth()
    p = _poison(p, value, index) if index is not None else np.full_like(p, value)
    with pytest.warns(RuntimeWarning, match="NaN"):
        res = depth_evaluation(p, g, **kw)
    assert _all_nan(res.metrics) and res.metrics["valid_pixels"] == g.size


@pytest.mark.parametrize("kw", [k for k in ALIGNS if "align_with_lstsq" not in k],
                         ids=lambda kw: next(iter(kw), "median"))
def test_depth_all_zero_prediction_gives_nan(kw):
    p, g = _depth()
    with pytest.warns(RuntimeWarning, match="not finite"):
        res = depth_evaluation(np.zeros_like(p), g, **kw)
    assert _all_nan(res.metrics)


def test_depth_all_zero_prediction_lstsq_is_the_constant_baseline():
    # an affine fit of a constant prediction is defined (the mean depth): a poor score, computed, not NaN
    p, g = _depth()
    m = depth_evaluation(np.zeros_like(p), g, align_with_lstsq=True).metrics
    assert m["Abs Rel"] > 0.3 and m["δ < 1.25"] < 0.5


@pytest.mark.parametrize("kw", ALIGNS, ids=lambda kw: next(iter(kw), "median"))
def test_depth_nothing_valid_gives_nan_not_zero(kw):
    for g in (np.zeros((2, 8, 8), np.float32), np.full((2, 8, 8), np.nan, np.float32), np.zeros((0, 4), np.float32)):
        with pytest.warns(RuntimeWarning, match="no valid GT pixel"):
            res = depth_evaluation(np.ones_like(g), g, **kw)
        assert _all_nan(res.metrics) and res.metrics["valid_pixels"] == 0


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_depth_non_finite_gt_pixels_are_invalid(value):
    p, g = _depth()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = depth_evaluation(p, _poison(g, value), max_depth=None, align_with_lad2=True).metrics
    assert m["valid_pixels"] == g.size - 1 and m["Abs Rel"] < 1e-3


def test_depth_mismatched_shapes():
    p, g = _depth()
    with pytest.raises(ValueError, match="differ in shape"):
        depth_evaluation(p, g[:, :4])
    with pytest.raises(ValueError, match="2 predicted vs 1 GT"):
        evaluate_video_depth({"s": ([p[0], p[1]], [g[0]])})
    with pytest.raises(ValueError, match="predictions vs"):
        evaluate_single_depth([p[0]], [])


def test_weighted_average_never_plausible_for_bad_results():
    p, g = _depth()
    good = depth_evaluation(p, g).metrics
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        empty = depth_evaluation(p, np.zeros_like(g)).metrics
        nan = depth_evaluation(np.full_like(p, np.nan), g).metrics
    assert weighted_depth_average([good, empty]) == {k: good[k] for k in DEPTH_METRIC_KEYS}  # empty: no weight
    assert _all_nan(weighted_depth_average([good, nan]))
    with pytest.warns(RuntimeWarning, match="no result has valid pixels"):
        assert _all_nan(weighted_depth_average([empty]))
    with pytest.raises(ValueError):
        weighted_depth_average([])


# ============================================================================ evaluation runs
def test_report_outcome(capsys):
    from monst3r.eval.entry import report_outcome

    assert report_outcome("sequences", 3, {}) == 0 and capsys.readouterr().err == ""
    assert report_outcome("sequences", 3, {"b": "failed: boom"}) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("warning: 1 of 3 sequences failed: b (failed: boom)")
    assert report_outcome("sequences", 2, {"a": "x\ny", "b": "degenerate"}) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: all 2 sequences failed: a (x y); b (degenerate)")


def test_pose_exit_status(capsys):
    from monst3r.eval.pose import PoseEvalSummary, SequenceRecord, exit_status

    recs = [SequenceRecord("a", "failed", message="cannot read image"), SequenceRecord("b", "degenerate")]
    assert exit_status(PoseEvalSummary("sintel", "/tmp", recs)) == 1
    assert "error: all 2 sequences failed" in capsys.readouterr().err
    recs.append(SequenceRecord("c", "ok", ate=0.1))
    assert exit_status(PoseEvalSummary("sintel", "/tmp", recs)) == 0
    assert "warning: 2 of 3 sequences failed: a (failed: cannot read image); b (degenerate)" in \
        capsys.readouterr().err
    assert exit_status(PoseEvalSummary("davis", "/tmp", [SequenceRecord("d", "no_gt")])) == 0


def _sintel_tree(root, seqs):
    from monst3r.eval.depth_io import write_dpt

    for name, pred in seqs.items():
        gt_dir, pred_dir = root / "data/sintel/training/depth" / name, root / "results/sintel_video_depth" / name
        gt_dir.mkdir(parents=True)
        pred_dir.mkdir(parents=True)
        for k in range(2):
            write_dpt(gt_dir / f"frame_{k + 1:04d}.dpt", np.full((6, 8), 3.0 + k, np.float32))
            if isinstance(pred, bytes):
                (pred_dir / f"frame_{k:04d}.npy").write_bytes(pred)
            else:
                np.save(pred_dir / f"frame_{k:04d}.npy", np.full((6, 8), pred * (1 + k), np.float32))


def _video_depth_cli(root, capsys):
    from monst3r.eval import video_depth

    rc = video_depth.main(["--eval_dataset", "sintel", "--eval_data_root", str(root), "--align", "median"])
    return rc, capsys.readouterr().err


def test_video_depth_cli_all_failed_and_partial(tmp_path, capsys):
    _sintel_tree(tmp_path / "all", {"alley": np.nan, "bamboo": b"not a numpy file"})
    rc, err = _video_depth_cli(tmp_path / "all", capsys)
    line = [ln for ln in err.splitlines() if ln.startswith(("error:", "warning:"))]
    assert rc == 1 and len(line) == 1 and line[0].startswith("error: all 2 sequences failed") and "Traceback" not in err
    assert "alley" in line[0] and "bamboo" in line[0]

    _sintel_tree(tmp_path / "part", {"alley": 2.0, "bamboo": np.inf})
    rc, err = _video_depth_cli(tmp_path / "part", capsys)
    line = [ln for ln in err.splitlines() if ln.startswith(("error:", "warning:"))]
    assert rc == 0 and line == [line[0]] and line[0].startswith("warning: 1 of 2 sequences failed: bamboo")


def test_launch_eval_pose_every_sequence_failed(tmp_path, capsys, monkeypatch):
    """End to end: every frame of every sequence unreadable -> exit 1 and one ``error:`` line naming them."""
    from pathlib import Path

    from synthetic_fixtures import write_tum_fixture

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1]))
    import launch

    write_tum_fixture(tmp_path, {"seq_a": dict(num_frames=4, width=64, height=48),
                                 "seq_b": dict(num_frames=4, width=64, height=48)})
    for png in (tmp_path / "data" / "tum").rglob("*.png"):
        png.write_bytes(b"broken")
    tiny = ("AsymmetricCroCo3DStereo(pos_embed='RoPE100', img_size=(64, 64), head_type='linear', "
            "output_mode='pts3d', enc_embed_dim=32, enc_depth=1, enc_num_heads=2, dec_embed_dim=32, dec_depth=1, "
            "dec_num_heads=2)")
    rc = launch.main(["--mode=eval_pose", "--eval_dataset=tum", f"--eval_data_root={tmp_path}", f"--model={tiny}",
                      f"--output_dir={tmp_path / 'out'}", "--eval_image_size", "64", "--flow_loss_weight", "0",
                      "--device", "cpu", "--silent", "--full_seq"])
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert rc == 1 and len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("error: all 2 sequences failed") and "seq_a" in lines[0] and "seq_b" in lines[0]
