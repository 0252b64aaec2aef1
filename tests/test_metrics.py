"""Pose and depth metrics against the golden outputs of the original evaluation code (shared/golden/eval)."""
import json
import warnings

import numpy as np
import pytest

from monst3r.eval.metrics import (
    DEPTH_METRIC_KEYS,
    DEPTH_PROTOCOLS,
    average_metric_files,
    average_pose_metrics,
    decode_png_depth,
    depth_evaluation,
    evaluate_single_depth,
    evaluate_video_depth,
    metric_file_text,
    parse_metric_text,
    pose_metrics,
    pose_metrics_c2w,
)
from monst3r.eval.trajectory import (
    c2w_to_tum_rows,
    load_pred_traj,
    load_traj,
    save_pred_traj,
    tum_rows_to_c2w,
    write_sintel_cam,
    write_tum,
)

GOOD_CASES = ["orbit_sim3_noise", "forward_drift", "orbit_large_noise", "near_static", "len_mismatch"]


def _rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-12)


@pytest.fixture
def pose_golden(golden):
    root = golden("eval", "pose")
    return root, np.load(root / "trajectories.npz"), json.loads((root / "pose_metrics.json").read_text())


# ------------------------------------------------------------------------------------------------ pose


@pytest.mark.parametrize("case", GOOD_CASES)
def test_pose_metrics_match_golden(pose_golden, case):
    _, z, js = pose_golden
    ref = js["per_sequence"][case]
    res = pose_metrics(z[f"{case}__pred_rows"], z[f"{case}__gt_traj_tum"], gt_timestamps=z[f"{case}__gt_timestamps"])
    assert not res.degenerate
    assert res.n_matched == min(ref["n_gt"], ref["n_est"])
    for ours, key in zip(res.as_tuple(), ("ate", "rpe_trans", "rpe_rot_deg")):
        assert _rel(ours, ref[key]) < 1e-9, (case, key, ours, ref[key])
    assert metric_file_text(case, res) == ref["metric_file_text"]
    if ref["n_gt"] == ref["n_est"]:  # the returned Sim(3) maps the estimate onto the GT with residual = ATE
        rot, trans, scale = res.alignment
        aligned = scale * z[f"{case}__pred_rows"][:, :3] @ rot.T + trans
        rmse = np.sqrt(np.mean(np.sum((aligned - z[f"{case}__gt_traj_tum"][:, :3]) ** 2, axis=1)))
        assert _rel(rmse, res.ate) < 1e-9


def test_exact_static_is_degenerate_not_raising(pose_golden):
    _, z, js = pose_golden
    assert js["per_sequence"]["exact_static"]["exception"].startswith("GeometryException")
    with pytest.warns(RuntimeWarning, match="degenerate"):
        res = pose_metrics(z["exact_static__pred_rows"], z["exact_static__gt_traj_tum"],
                           gt_timestamps=z["exact_static__gt_timestamps"])
    assert res.degenerate and np.isnan(res.ate) and np.isnan(res.rpe_trans) and np.isnan(res.rpe_rot_deg)
    with pytest.raises(ValueError):
        metric_file_text("exact_static", res)


def test_other_degenerate_trajectories_warn():
    rng = np.random.default_rng(0)
    line = np.zeros((10, 4, 4))
    line[:] = np.eye(4)
    line[:, 0, 3] = np.linspace(0, 1, 10)
    noisy = line.copy()
    noisy[:, :3, 3] += rng.normal(0, 0.01, (10, 3))
    with pytest.warns(RuntimeWarning, match="collinear"):
        assert pose_metrics_c2w(noisy, line).degenerate
    with pytest.warns(RuntimeWarning, match="at least 3"):
        assert pose_metrics_c2w(noisy[:2], line[:2]).degenerate
    with pytest.warns(RuntimeWarning, match="no matching"):
        assert pose_metrics(c2w_to_tum_rows(noisy), c2w_to_tum_rows(line[:5]),
                            gt_timestamps=np.arange(5) + 100.0).degenerate
    results = {"a": pose_metrics_c2w(noisy, noisy)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results["b"] = pose_metrics_c2w(noisy[:2], line[:2])
    assert average_pose_metrics(results)["ate"] == pytest.approx(results["a"].ate)


def test_gt_loaders_and_pred_files(pose_golden, tmp_path):
    root, z, _ = pose_golden
    for case, fmt in [("orbit_sim3_noise", "tum"), ("near_static", "tum"), ("exact_static", "tum"),
                      ("forward_drift", "replica"), ("len_mismatch", "replica")]:
        rows, stamps = load_traj(root / f"{case}_gt_{fmt}.txt", traj_format=fmt)
        atol = 1e-8 if fmt == "tum" else 1e-9
        np.testing.assert_allclose(rows, z[f"{case}__gt_traj_tum"], atol=atol, rtol=0)
        np.testing.assert_allclose(stamps.ravel(), z[f"{case}__gt_timestamps"].ravel(), atol=1e-6, rtol=0)
    # Sintel .cam files regenerated from gt_c2w (the intrinsics do not matter).
    case = "orbit_large_noise"
    cams = tmp_path / "cams"
    cams.mkdir()
    for k, c2w in enumerate(z[f"{case}__gt_c2w"]):
        write_sintel_cam(cams / f"frame_{k + 1:04d}.cam", np.diag([500.0, 500.0, 1.0]), np.linalg.inv(c2w)[:3])
    rows, stamps = load_traj(cams, traj_format="sintel")
    np.testing.assert_allclose(rows, z[f"{case}__gt_traj_tum"], atol=1e-9, rtol=0)
    assert stamps.shape == (len(rows), 1)
    np.testing.assert_array_equal(stamps, z[f"{case}__gt_timestamps"].reshape(-1, 1))
    # Estimates: c2w -> rows like c2w_to_tumpose, and the pred_traj.txt layout (w-first quaternion).
    for case in GOOD_CASES + ["exact_static"]:
        ours = c2w_to_tum_rows(z[f"{case}__est_c2w"])
        np.testing.assert_allclose(ours, z[f"{case}__pred_rows"], atol=1e-12, rtol=0)
        rows, stamps = load_pred_traj(root / f"{case}_pred_traj.txt")
        np.testing.assert_allclose(rows, z[f"{case}__pred_rows"], atol=1e-12, rtol=0)
        np.testing.assert_array_equal(stamps, np.arange(len(rows)))
        save_pred_traj(tmp_path / "pred_traj.txt", z[f"{case}__est_c2w"])
        rows2, _ = load_pred_traj(tmp_path / "pred_traj.txt")
        np.testing.assert_allclose(rows2, z[f"{case}__pred_rows"], atol=1e-12, rtol=0)
    np.testing.assert_allclose(tum_rows_to_c2w(z["forward_drift__pred_rows"]), z["forward_drift__est_c2w"],
                               atol=1e-12)
    # Standard TUM writer round trip through the evo reader.
    c2w = z["orbit_sim3_noise__gt_c2w"]
    write_tum(tmp_path / "gt.txt", c2w, np.arange(len(c2w)) * 0.5)
    rows, stamps = load_traj(tmp_path / "gt.txt", traj_format="tum")
    np.testing.assert_allclose(tum_rows_to_c2w(rows), c2w, atol=1e-8)


def test_metric_file_aggregation(pose_golden, tmp_path):
    _, _, js = pose_golden
    for case, ref in js["per_sequence"].items():
        if ref["exception"] is None:
            (tmp_path / f"{case}_eval_metric.txt").write_text(ref["metric_file_text"])
    averages, records = average_metric_files(tmp_path)
    assert records == [{k: v for k, v in r.items()} for r in js["parsed_from_metric_files"]]
    for key, val in js["average_over_parsed"].items():
        assert averages[key] == pytest.approx(val, rel=1e-12, abs=0)
    assert parse_metric_text("nothing here") == {"ate": 0.0, "rpe_trans": 0.0, "rpe_rot_deg": 0.0}


# ------------------------------------------------------------------------------------------------ depth


@pytest.fixture
def depth_golden(golden):
    root = golden("eval", "depth")
    return (np.load(root / "depth_direct_inputs_outputs.npz"),
            json.loads((root / "depth_direct_metrics.json").read_text(encoding="utf-8")),
            np.load(root / "notebook_inputs.npz"),
            json.loads((root / "notebook_results.json").read_text(encoding="utf-8")))


def _tolerance(config: str) -> float:
    return 1e-3 if config in ("video_scale_weiszfeld", "video_lad_scipy") else 1e-6


def _assert_metrics(ours: dict, ref: dict, tol: float) -> None:
    for key, val in ref.items():
        if key == "valid_pixels":
            assert ours[key] == val
        else:
            assert _rel(ours[key], val) < tol, (key, ours[key], val)


def test_depth_evaluation_matches_golden(depth_golden):
    z, js, _, _ = depth_golden
    assert len(js) == 14
    for config, ref in js.items():
        kwargs = dict(ref["kwargs"])
        if "custom_mask" in kwargs:
            kwargs["custom_mask"] = z[kwargs["custom_mask"]]
        res = depth_evaluation(z[f"{ref['input']}_pred"], z[f"{ref['input']}_gt"], **kwargs)
        tol = _tolerance(config)
        _assert_metrics(res.metrics, ref["metrics"], tol)
        for ours, key in ((res.error_map, "error_map"), (res.pred_aligned, "pred_aligned_full")):
            gold = z[f"{config}__{key}"]
            np.testing.assert_allclose(ours.reshape(gold.shape), gold, rtol=tol, atol=1e-6, err_msg=config)


def test_depth_evaluation_edge_cases():
    gt = np.full((4, 5), -1.0, dtype=np.float32)
    with pytest.warns(RuntimeWarning, match="no valid GT pixel"):
        res = depth_evaluation(np.ones_like(gt), gt)
    # NaN, not the old all-zero result (Abs Rel 0.0 read as a perfect score)
    assert res.metrics["valid_pixels"] == 0.0 and all(np.isnan(res.metrics[k]) for k in DEPTH_METRIC_KEYS)
    gt = np.linspace(1, 5, 20, dtype=np.float32).reshape(4, 5)
    res = depth_evaluation(gt * 3, gt, align_with_lstsq=True)
    assert res.metrics["Abs Rel"] < 1e-5 and res.metrics["δ < 1.25"] == 1.0
    with pytest.raises(ValueError):
        depth_evaluation(gt[:2], gt)


def _frames(z, prefix):
    keys = sorted((k for k in z.files if k.startswith(prefix)), key=lambda k: int(k.rsplit("_", 1)[1]))
    return [z[k] for k in keys]


def _seqs(z, dataset):
    return sorted({k.split("__")[1] for k in z.files if k.startswith(dataset + "__")})


def test_notebook_protocols_match_golden(depth_golden):
    _, _, z, js = depth_golden
    gt_decoders = {"sintel": ("gt_", lambda x: x), "bonn": ("gt_png_", lambda x: decode_png_depth(x, 5000.0)),
                   "kitti": ("gt_png_", lambda x: decode_png_depth(x, 256.0))}
    runs = {"sintel": "sintel", "bonn": "bonn_renamed_pred_dirs", "kitti": "kitti"}
    for dataset, run in runs.items():
        gt_key, decode = gt_decoders[dataset]
        seqs = {s: (_frames(z, f"{dataset}__{s}__pred_"), [decode(x) for x in _frames(z, f"{dataset}__{s}__{gt_key}")])
                for s in _seqs(z, dataset)}
        per_seq, average = evaluate_video_depth(seqs, **DEPTH_PROTOCOLS[dataset])
        ref = js[run]
        assert ref["error"] is None and len(per_seq) == len(ref["per_seq"])
        for ours, gold in zip(per_seq.values(), ref["per_seq"]):
            _assert_metrics(ours, gold, 1e-6)
        _assert_metrics(average, ref["average"], 1e-6)
    per_image, average = evaluate_single_depth(_frames(z, "nyu__pred_"), _frames(z, "nyu__gt_"),
                                               **DEPTH_PROTOCOLS["nyu"])
    for ours, gold in zip(per_image, js["nyu"]["per_seq"]):
        _assert_metrics(ours, gold, 1e-6)
    _assert_metrics(average, js["nyu"]["average"], 1e-6)
    # The original Bonn cell crashes on mismatched folder names; ours refuses an empty sequence clearly.
    assert js["bonn_as_documented"]["error"].startswith("ValueError")
    with pytest.raises(ValueError, match="0 predicted"):
        evaluate_video_depth({"balloon2": ([], [np.ones((2, 2))])})
