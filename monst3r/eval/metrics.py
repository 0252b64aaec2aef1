"""Camera-pose and depth metrics, computed exactly as the original MonST3R evaluation reports them.

Pose (evaluation spec §5), computed with evo:

* trajectories are TUM rows ``[N, 7]`` = ``x y z qw qx qy qz`` of camera-to-world poses plus timestamps
  (see :mod:`monst3r.eval.trajectory`);
* equal-length trajectories are matched by index (the prediction's timestamps are replaced by the GT's);
  otherwise by time (evo ``associate_trajectories``, nearest stamp, ``max_diff = 0.01``);
* **ATE**: Sim(3) Umeyama alignment of the estimated positions onto the GT (in place), RMSE of the position
  error (GT units, metres);
* **RPE** (rotation, then translation), ``delta = 1`` frame, all pairs, on the aligned trajectory (each call
  re-aligns with Sim(3), which is then ~identity): RMSE of the rotation angle of the relative error in
  DEGREES, RMSE of the relative translation error (metres).

A degenerate trajectory (fewer than 3 matched poses, a static camera, collinear positions, or any case where
evo's Umeyama alignment raises) does not raise: :func:`pose_metrics` warns and returns a :class:`PoseMetrics`
with ``degenerate=True`` and NaN values. The original crashes inside evo and skips such a sequence; skipping it
in an average is what :func:`average_pose_metrics` does. Collinear/static are detected with a relative rank
test (second singular value of the centred positions <= 1e-9 x the first), a little stricter than evo's
absolute-epsilon test, because evo's test lets exactly collinear trajectories with large coordinates through
(alignment then has an arbitrary rotation about the line).

The metric files (``<seq>_eval_metric.txt``) and their aggregation are reproduced too
(:func:`metric_file_text`, :func:`parse_metric_text`, :func:`average_metric_files`): the numbers the original
reports are means of the 6-decimal values parsed from those files.

Depth (evaluation spec §7): :func:`depth_evaluation` mirrors the original function (same keyword arguments,
same float32 torch arithmetic, torch LOWER medians, the deliberately under-converged ``align_with_lad2`` Adam
loop) and returns the metrics ``Abs Rel, Sq Rel, RMSE, Log RMSE, δ < 1.25, δ < 1.25^2, δ < 1.25^3`` (fractions)
plus ``valid_pixels``. The video-depth notebook protocol (resize each predicted frame to the GT size with OpenCV
bicubic, one alignment per sequence, ``valid_pixels``-weighted average) is :func:`evaluate_video_depth`;
single-frame (NYU) is :func:`evaluate_single_depth`; the per-dataset settings of the notebook cells are in
:data:`DEPTH_PROTOCOLS`.
"""
from __future__ import annotations

import logging
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, NamedTuple, Optional, Sequence, Union

import numpy as np
import torch

from monst3r.eval.depth_alignment import LAD2_EARLY_STOP, clip, fit_scale_shift  # noqa: F401
from monst3r.eval.trajectory import c2w_to_tum_rows

logger = logging.getLogger(__name__)

ArrayLike = Union[np.ndarray, torch.Tensor]

__all__ = [
    "PoseMetrics",
    "pose_metrics",
    "pose_metrics_c2w",
    "metric_file_text",
    "parse_metric_text",
    "average_metric_files",
    "average_pose_metrics",
    "DEPTH_METRIC_KEYS",
    "DEPTH_PROTOCOLS",
    "DepthEvalResult",
    "depth_evaluation",
    "weighted_depth_average",
    "resize_depth",
    "decode_png_depth",
    "evaluate_video_depth",
    "evaluate_single_depth",
]

# ----------------------------------------------------------------------------------------------------------
# Pose metrics
# ----------------------------------------------------------------------------------------------------------

APE_TITLE = "APE w.r.t. translation part (m)\n(with Sim(3) Umeyama alignment)"
RPE_ROT_TITLE = ("RPE w.r.t. rotation angle in degrees (deg)\nfor delta = 1 (frames) using all pairs\n"
                 "(with Sim(3) Umeyama alignment)")
RPE_TRANS_TITLE = ("RPE w.r.t. translation part (m)\nfor delta = 1 (frames) using all pairs\n"
                   "(with Sim(3) Umeyama alignment)")
STAT_NAMES = ("max", "mean", "median", "min", "rmse", "sse", "std")
ASSOCIATION_MAX_DIFF = 0.01
DEGENERATE_RANK_RTOL = 1e-9


@dataclass
class PoseMetrics:
    """Pose-evaluation result of one sequence.

    Attributes:
        ate: absolute trajectory error, RMSE after Sim(3) alignment (GT units; NaN if degenerate).
        rpe_trans: relative pose error, translation RMSE for delta = 1 frame (GT units; NaN if degenerate).
        rpe_rot_deg: relative pose error, rotation-angle RMSE in degrees (NaN if degenerate).
        degenerate: True when the metrics could not be computed (the original skips such sequences).
        reason: why it is degenerate (None otherwise).
        n_matched: number of associated poses.
        stats: ``{'ape': {...}, 'rpe_rot': {...}, 'rpe_trans': {...}}`` with evo's statistics
            (max, mean, median, min, rmse, sse, std); empty when degenerate.
        alignment: ``(R [3,3], t [3], s)`` Sim(3) that maps the estimate onto the GT (None when degenerate).
    """

    ate: float
    rpe_trans: float
    rpe_rot_deg: float
    degenerate: bool = False
    reason: Optional[str] = None
    n_matched: int = 0
    stats: dict[str, dict[str, float]] = field(default_factory=dict)
    alignment: Optional[tuple[np.ndarray, np.ndarray, float]] = None

    def as_tuple(self) -> tuple[float, float, float]:
        """``(ate, rpe_trans, rpe_rot_deg)`` in the order the original returns them."""
        return self.ate, self.rpe_trans, self.rpe_rot_deg


def _degenerate(reason: str, n_matched: int, seq: Optional[str]) -> PoseMetrics:
    where = f" in sequence {seq}" if seq else ""
    warnings.warn(f"degenerate trajectory{where}: {reason}; pose metrics set to NaN", RuntimeWarning,
                  stacklevel=3)
    nan = float("nan")
    return PoseMetrics(nan, nan, nan, degenerate=True, reason=reason, n_matched=n_matched)


def _rank_problem(positions: np.ndarray) -> Optional[str]:
    """'static' / 'collinear' when the ``[N, 3]`` positions span less than a plane, else None."""
    centred = positions - positions.mean(axis=0)
    sv = np.linalg.svd(centred, compute_uv=False)
    scale = max(float(np.abs(positions).max(initial=0.0)), 1.0)
    if sv[0] <= 1e-12 * scale:
        return "static camera (all positions identical)"
    if sv[1] <= DEGENERATE_RANK_RTOL * sv[0]:
        return "collinear camera positions"
    return None


def _tum_rows(rows: ArrayLike, name: str) -> np.ndarray:
    """``[N, 7]`` float64 view of TUM rows; any other layout is a ValueError (never silently re-chunked)."""
    arr = np.asarray(rows, dtype=np.float64)
    if arr.ndim == 0 or arr.shape[-1] != 7 or (arr.ndim > 2 and any(d != 1 for d in arr.shape[:-2])):
        if not (arr.size == 0 and arr.ndim <= 2):
            raise ValueError(f"{name}: expected [N, 7] TUM rows (x y z qw qx qy qz), got shape {arr.shape}")
    return arr.reshape(-1, 7)


def _row_problem(rows: np.ndarray, timestamps: np.ndarray) -> Optional[str]:
    """Why TUM rows cannot be evaluated (non-finite values, zero-norm quaternions), or None."""
    bad = ~np.isfinite(rows).all(axis=1) | ~np.isfinite(timestamps)
    if bad.any():
        return f"non-finite values in {int(bad.sum())} of {len(rows)} poses (first: index {int(np.argmax(bad))})"
    zero_q = np.linalg.norm(rows[:, 3:], axis=1) < 1e-12
    if zero_q.any():
        return f"zero-norm quaternion in {int(zero_q.sum())} of {len(rows)} poses"
    return None


def _stamps(timestamps: Optional[ArrayLike], n: int) -> np.ndarray:
    """``[n]`` float64 timestamps: the given ones flattened, default ``0..n-1``."""
    if timestamps is None:
        return np.arange(n, dtype=np.float64)
    return np.asarray(timestamps, dtype=np.float64).reshape(-1)


def _pose_inputs(pred_rows: ArrayLike, gt_rows: ArrayLike, pred_timestamps: Optional[ArrayLike],
                 gt_timestamps: Optional[ArrayLike]
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, Optional[str]]:
    """Checked inputs of :func:`pose_metrics`: rows ``[M, 7]`` / ``[N, 7]``, timestamps ``[M]`` / ``[N]``, and the
    problem that makes the metrics NaN (None when usable). Raises ValueError on caller mistakes."""
    pred_rows, gt_rows = _tum_rows(pred_rows, "pred_rows"), _tum_rows(gt_rows, "gt_rows")
    pred_ts, gt_ts = _stamps(pred_timestamps, len(pred_rows)), _stamps(gt_timestamps, len(gt_rows))
    if len(pred_ts) != len(pred_rows) or len(gt_ts) != len(gt_rows):
        raise ValueError("timestamps and poses differ in length")
    problem = None
    if len(pred_rows) == 0 or len(gt_rows) == 0:
        problem = "empty trajectory"
    else:
        for name, rows, ts in (("estimate", pred_rows, pred_ts), ("GT", gt_rows, gt_ts)):
            problem = _row_problem(rows, ts)
            if problem:
                problem = f"{problem} ({name})"
                break
    return pred_rows, gt_rows, pred_ts, gt_ts, problem


def _evo_stats(traj_ref, traj_est) -> tuple[dict, Optional[tuple[np.ndarray, np.ndarray, float]]]:
    """evo's APE (translation, Sim(3)-aligned) and all-pairs RPE (rotation in degrees, translation) of two
    associated ``PoseTrajectory3D``: ``({'ape'|'rpe_rot'|'rpe_trans': stats}, (R [3,3], t [3], s) or None)``.
    Raises evo's GeometryException / LinAlgError on degenerate trajectories."""
    from evo import main_ape, main_rpe
    from evo.core import metrics as evo_metrics

    common = dict(align=True, correct_scale=True)
    rpe_kw = dict(delta=1, delta_unit=evo_metrics.Unit.frames, all_pairs=True, **common)
    ape = main_ape.ape(traj_ref, traj_est, pose_relation=evo_metrics.PoseRelation.translation_part, **common)
    alignment = ape.np_arrays.get("alignment_transformation_sim3")
    rpe_rot = main_rpe.rpe(traj_ref, traj_est, pose_relation=evo_metrics.PoseRelation.rotation_angle_deg,
                           **rpe_kw)
    rpe_trans = main_rpe.rpe(traj_ref, traj_est, pose_relation=evo_metrics.PoseRelation.translation_part,
                             **rpe_kw)
    sim3 = None
    if alignment is not None:
        a = np.asarray(alignment)
        scale = float(np.cbrt(np.linalg.det(a[:3, :3])))
        sim3 = (a[:3, :3] / scale, a[:3, 3].copy(), scale)
    stats = {key: {k: float(v) for k, v in res.stats.items()}
             for key, res in (("ape", ape), ("rpe_rot", rpe_rot), ("rpe_trans", rpe_trans))}
    return stats, sim3


def pose_metrics(pred_rows: ArrayLike, gt_rows: ArrayLike, pred_timestamps: Optional[ArrayLike] = None,
                 gt_timestamps: Optional[ArrayLike] = None, *, seq: Optional[str] = None,
                 max_diff: float = ASSOCIATION_MAX_DIFF) -> PoseMetrics:
    """ATE / RPE-trans / RPE-rot of an estimated trajectory against the GT (original ``eval_metrics``).

    Args:
        pred_rows: ``[M, 7]`` estimated TUM rows ``x y z qw qx qy qz`` (camera-to-world), e.g. from
            ``get_tum_poses()`` or :func:`monst3r.eval.trajectory.load_pred_traj`.
        gt_rows: ``[N, 7]`` GT rows in the same layout (:func:`monst3r.eval.trajectory.load_traj`).
        pred_timestamps: ``[M]``; default ``0..M-1`` (what the optimizer reports).
        gt_timestamps: ``[N]`` (or ``[N, 1]``); default ``0..N-1``.
        seq: sequence name, only used in warnings.
        max_diff: time-association tolerance (seconds) for unequal lengths.
    Note:
        As in the original, unequal lengths are associated by timestamp, which is only meaningful when both use
        the same clock: with Sintel GT (1-based frame numbers) and default 0-based prediction stamps the
        original silently pairs prediction k with GT frame k+1; pass ``pred_timestamps=np.arange(M) + 1``
        (or the real frame numbers) to pair the right frames.
    Returns:
        :class:`PoseMetrics`; degenerate inputs (empty, fewer than 3 matched poses, static or collinear
        positions, NaN/inf values, zero-norm quaternions) give NaNs and a ``RuntimeWarning`` instead of raising.
    Raises:
        ValueError: rows that are not ``[N, 7]``, or timestamps of another length (caller mistakes).
    """
    from evo.core import sync
    from evo.core.geometry import GeometryException
    from evo.core.trajectory import PoseTrajectory3D

    pred_rows, gt_rows, pred_ts, gt_ts, problem = _pose_inputs(pred_rows, gt_rows, pred_timestamps, gt_timestamps)
    if problem:
        return _degenerate(problem, 0, seq)

    if len(pred_rows) == len(gt_rows):
        pred_ts = gt_ts.copy()  # index-wise correspondence, as the original does
    else:
        logger.info("pose_metrics: %d estimated vs %d GT poses, associating by timestamp", len(pred_rows),
                    len(gt_rows))
    traj_ref = PoseTrajectory3D(positions_xyz=gt_rows[:, :3], orientations_quat_wxyz=gt_rows[:, 3:],
                                timestamps=gt_ts)
    traj_est = PoseTrajectory3D(positions_xyz=pred_rows[:, :3], orientations_quat_wxyz=pred_rows[:, 3:],
                                timestamps=pred_ts)
    try:
        traj_ref, traj_est = sync.associate_trajectories(traj_ref, traj_est, max_diff=max_diff)
    except sync.SyncException as exc:
        return _degenerate(f"no matching timestamps ({exc})", 0, seq)
    n = traj_est.num_poses
    if n < 3:
        return _degenerate(f"only {n} matched poses (need at least 3)", n, seq)
    for name, traj in (("GT", traj_ref), ("estimate", traj_est)):
        problem = _rank_problem(traj.positions_xyz)
        if problem:
            return _degenerate(f"{problem} ({name})", n, seq)

    try:
        stats, sim3 = _evo_stats(traj_ref, traj_est)
    except (GeometryException, np.linalg.LinAlgError) as exc:
        return _degenerate(f"{type(exc).__name__}: {exc}", n, seq)
    return PoseMetrics(ate=stats["ape"]["rmse"], rpe_trans=stats["rpe_trans"]["rmse"],
                       rpe_rot_deg=stats["rpe_rot"]["rmse"], n_matched=n, stats=stats, alignment=sim3)


def pose_metrics_c2w(pred_c2w: ArrayLike, gt_c2w: ArrayLike, **kwargs: Any) -> PoseMetrics:
    """:func:`pose_metrics` for ``[M, 4, 4]`` / ``[N, 4, 4]`` camera-to-world matrices (timestamps 0..N-1).
    Non-finite matrices give a degenerate (NaN) result like :func:`pose_metrics`; other shapes a ValueError."""
    rows = []
    for name, m in (("pred_c2w", pred_c2w), ("gt_c2w", gt_c2w)):
        a = np.asarray(m.detach().cpu() if hasattr(m, "detach") else m, dtype=np.float64)
        if a.ndim == 2:
            a = a[None]
        if a.ndim != 3 or a.shape[1:] not in ((4, 4), (3, 4)):
            raise ValueError(f"{name}: expected [N, 4, 4] camera-to-world matrices, got shape {a.shape}")
        finite = np.isfinite(a).reshape(len(a), -1).all(axis=1)
        r = np.full((len(a), 7), np.nan)
        if finite.any():
            r[finite] = c2w_to_tum_rows(a[finite])
        rows.append(r)
    return pose_metrics(rows[0], rows[1], **kwargs)


def metric_file_text(seq: str, result: PoseMetrics) -> str:
    """The ``<seq>_eval_metric.txt`` content the original writes (evo result layout, 6 decimals)."""
    if result.degenerate:
        raise ValueError(f"no metric file for a degenerate sequence ({result.reason})")
    text = f"Seq: {seq} \n\n"
    for title, key in ((APE_TITLE, "ape"), (RPE_ROT_TITLE, "rpe_rot"), (RPE_TRANS_TITLE, "rpe_trans")):
        text += title + "\n\n"
        text += "".join(f"{name:>10}\t{result.stats[key][name]:.6f}\n" for name in STAT_NAMES)
    return text


_METRIC_PATTERNS = {
    "ate": re.compile(r"APE w\.r\.t\. translation part \(m\).*?rmse\s+([-+0-9.eE]+|nan|inf)", re.DOTALL),
    "rpe_trans": re.compile(r"RPE w\.r\.t\. translation part \(m\).*?rmse\s+([-+0-9.eE]+|nan|inf)", re.DOTALL),
    "rpe_rot_deg": re.compile(r"RPE w\.r\.t\. rotation angle in degrees \(deg\).*?rmse\s+([-+0-9.eE]+|nan|inf)",
                              re.DOTALL),
}


def parse_metric_text(text: str) -> dict[str, float]:
    """Extract the three rmse values from a metric file text (0.0 for a missing one, as the original).

    ``nan`` / ``inf`` values are read as such (the original's ``[0-9.]+`` pattern turned them into 0.0, a
    perfect-looking score)."""
    out = {}
    for key, pattern in _METRIC_PATTERNS.items():
        match = pattern.search(text)
        out[key] = float(match.group(1)) if match else 0.0
    return out


def average_metric_files(folder: Union[str, os.PathLike]) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Aggregate like the original: every ``*_metric.txt`` under ``folder`` (recursive, sorted per directory).

    Returns:
        (averages ``{'ate', 'rpe_trans', 'rpe_rot_deg'}`` = plain means of the parsed 6-decimal values, 0.0 if
        no file; the parsed per-file records ``{'seq', 'ate', 'rpe_trans', 'rpe_rot_deg'}`` in walk order).
    """
    records = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            if name.endswith("_metric.txt"):
                parsed = parse_metric_text((Path(root) / name).read_text())
                records.append({"seq": name.replace("_eval_metric.txt", ""), **parsed})
    averages = {k: (float(np.mean([r[k] for r in records])) if records else 0.0)
                for k in ("ate", "rpe_trans", "rpe_rot_deg")}
    return averages, records


def average_pose_metrics(results: Mapping[str, PoseMetrics]) -> dict[str, float]:
    """Plain means over the non-degenerate sequences (in-memory values, not the 6-decimal text)."""
    good = [r for r in results.values() if not r.degenerate]
    return {k: (float(np.mean([getattr(r, k) for r in good])) if good else float("nan"))
            for k in ("ate", "rpe_trans", "rpe_rot_deg")}


# ----------------------------------------------------------------------------------------------------------
# Depth metrics
# ----------------------------------------------------------------------------------------------------------

DEPTH_METRIC_KEYS = ("Abs Rel", "Sq Rel", "RMSE", "Log RMSE", "δ < 1.25", "δ < 1.25^2", "δ < 1.25^3")

#: ``depth_evaluation`` keyword arguments of the original notebook cells (evaluation spec §7.3).
DEPTH_PROTOCOLS: dict[str, dict[str, Any]] = {
    "sintel": dict(max_depth=70, align_with_lad2=True, post_clip_max=70),
    "bonn": dict(max_depth=70, align_with_lad2=True),
    "kitti": dict(max_depth=None, align_with_lad2=True),
    "nyu": dict(max_depth=None, lr=1e-3),  # median scaling (lr is unused there)
    "synthetic": dict(max_depth=None),  # ours: one median scale per sequence (exact GT, every pixel valid)
}

class DepthEvalResult(NamedTuple):
    """Return value of :func:`depth_evaluation` (unpacks like the original's tuple).

    ``error_map``, ``pred_aligned`` and ``gt_valid`` have the input's shape (the original returns them
    flattened to 2-D ``[T*H, W]`` for videos).
    """

    metrics: dict[str, float]
    error_map: np.ndarray  # |s*pred+t - gt| / gt on valid pixels, 0 elsewhere
    pred_aligned: np.ndarray  # aligned prediction on the full grid (inverted back for disp_input)
    gt_valid: np.ndarray  # GT with invalid pixels set to 0


def _as_tensor(x: ArrayLike, device: torch.device) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach().to(device)
    return torch.from_numpy(np.ascontiguousarray(x)).to(device)


def _valid_gt_mask(gt: torch.Tensor, max_depth: Optional[float]) -> torch.Tensor:
    """Bool mask (gt's shape) of the usable GT pixels: positive, finite and below ``max_depth`` (no cap if None)."""
    mask = (gt > 0) & torch.isfinite(gt)
    if max_depth is not None:
        mask = mask & (gt < max_depth)
    return mask


def _gt_valid(mask: torch.Tensor, gt: torch.Tensor) -> np.ndarray:
    """The GT (its shape) with the pixels outside ``mask`` set to 0, as a NumPy array."""
    return torch.where(mask, gt, torch.zeros((), dtype=gt.dtype, device=gt.device)).cpu().numpy()


def depth_evaluation(pred: ArrayLike, gt: ArrayLike, max_depth: Optional[float] = 80,
                     custom_mask: Optional[ArrayLike] = None, post_clip_min: Optional[float] = None,
                     post_clip_max: Optional[float] = None, pre_clip_min: Optional[float] = None,
                     pre_clip_max: Optional[float] = None, align_with_lstsq: bool = False,
                     align_with_lad: bool = False, align_with_lad2: bool = False, lr: float = 1e-4,
                     max_iters: int = 1000, use_gpu: bool = False, align_with_scale: bool = False,
                     disp_input: bool = False, device: Optional[Union[str, torch.device]] = None
                     ) -> DepthEvalResult:
    """Align a depth prediction to the GT and compute the depth metrics (original ``depth_evaluation``).

    Args:
        pred: ``[H, W]`` or ``[T, H, W]`` predicted depth (or disparity with ``disp_input``); a video gets ONE
            alignment for all frames.
        gt: same shape, GT depth; valid where ``gt > 0`` and ``gt < max_depth`` (no cap if None).
        custom_mask: optional bool mask (same shape): metrics only where valid AND mask (alignment still uses
            every valid pixel).
        pre_clip_min/max: clip the valid predictions before alignment; post_clip_min/max: after.
        align_with_lstsq: least-squares scale and shift. align_with_lad: SciPy BFGS L1 scale and shift.
        align_with_lad2: Adam L1 scale and shift from the median scale (lr, max_iters), the video-depth mode.
        align_with_scale: IRLS (Weiszfeld) robust scale only. Default (no flag): median scale
            (torch lower medians). The first true flag in this order wins.
        disp_input: pred is an (affine) disparity: the alignment happens against 1/gt, the result is inverted.
        use_gpu: kept for signature compatibility; same as ``device='cuda'``.
        device: torch device for the computation (default CPU). Arithmetic stays in the input dtype.
    Returns:
        :class:`DepthEvalResult` ``(metrics, error_map, pred_aligned, gt_valid)``; ``metrics`` has the keys of
        :data:`DEPTH_METRIC_KEYS` (δ as fractions) plus ``valid_pixels`` (float).
    NaN instead of a score (with a ``RuntimeWarning``): when no pixel is valid (the previous all-zero result
    read as a perfect Abs Rel), when a valid pixel of the prediction is NaN/inf, or when the alignment is not
    finite (e.g. an all-zero prediction with median scaling). Non-finite GT pixels count as invalid (the
    original kept +inf GT when ``max_depth`` is None and then reported NaN for the whole sequence).
    """
    device = torch.device(device if device is not None else ("cuda" if use_gpu else "cpu"))
    pred_t, gt_t = _as_tensor(pred, device), _as_tensor(gt, device)
    if pred_t.shape != gt_t.shape:
        raise ValueError(f"prediction {tuple(pred_t.shape)} and GT {tuple(gt_t.shape)} differ in shape")
    shape = gt_t.shape
    mask = _valid_gt_mask(gt_t, max_depth)
    p, g = pred_t[mask], gt_t[mask]
    n_bad = int((~torch.isfinite(p)).sum())
    if n_bad:
        warnings.warn(f"depth_evaluation: {n_bad} of {p.numel()} valid pixels of the prediction are NaN/inf; "
                      "metrics set to NaN", RuntimeWarning, stacklevel=2)
        nan = torch.full(shape, float("nan"), dtype=pred_t.dtype, device=device)
        return DepthEvalResult(_nan_metrics(p.numel()), nan.cpu().numpy(), pred_t.cpu().numpy(),
                               _gt_valid(mask, gt_t))
    p = clip(p, pre_clip_min, pre_clip_max)
    g_depth = g
    if disp_input:
        g = 1 / (g + 1e-8)

    if align_with_lstsq:
        mode = "lstsq"
    else:
        mode = "lad" if align_with_lad else "lad2" if align_with_lad2 else "scale" if align_with_scale else "median"
    scale, shift = fit_scale_shift(p, g, mode, lr, max_iters)
    finite_fit = all(bool(torch.isfinite(torch.as_tensor(v)).all()) for v in (scale, shift))
    p = p * scale + shift
    pred_aligned = pred_t * scale + shift
    if disp_input:
        g = g_depth
        p = torch.where(p > 0, 1 / p, torch.zeros_like(p))
        pred_aligned = torch.where(pred_aligned > 0, 1 / pred_aligned, torch.zeros_like(pred_aligned))
    p = clip(p, post_clip_min, post_clip_max)
    if custom_mask is not None:
        keep = _as_tensor(custom_mask, device).reshape(shape).bool()[mask]
        p, g = p[keep], g[keep]

    if p.numel() and (not finite_fit or not bool(torch.isfinite(p).all())):
        # degenerate alignment, e.g. an all-zero prediction makes the median scale infinite
        warnings.warn("depth_evaluation: the aligned prediction is not finite (constant or zero prediction?); "
                      "metrics set to NaN", RuntimeWarning, stacklevel=2)
        metrics = _nan_metrics(p.numel())
    else:
        metrics = _depth_metrics(p, g)
    zero = torch.zeros((), dtype=pred_aligned.dtype, device=device)
    error_map = torch.where(mask, torch.abs(pred_aligned - gt_t) / gt_t, zero)
    return DepthEvalResult(metrics, error_map.cpu().numpy(), pred_aligned.cpu().numpy(), _gt_valid(mask, gt_t))


def _nan_metrics(n_valid: int) -> dict[str, float]:
    return {**{k: float("nan") for k in DEPTH_METRIC_KEYS}, "valid_pixels": float(n_valid)}


def _depth_metrics(p: torch.Tensor, g: torch.Tensor) -> dict[str, float]:
    """Metrics of aligned predictions ``p [N]`` against GT ``g [N]`` (NaN when N = 0)."""
    n = p.numel()
    if n == 0:
        warnings.warn("depth_evaluation: no valid GT pixel; metrics set to NaN", RuntimeWarning, stacklevel=3)
        return _nan_metrics(0)
    diff = p - g
    out = {
        "Abs Rel": torch.mean(torch.abs(diff) / g).item(),
        "Sq Rel": torch.mean(diff ** 2 / g).item(),
        "RMSE": torch.sqrt(torch.mean(diff ** 2)).item(),
    }
    p = torch.clamp(p, min=1e-5)
    out["Log RMSE"] = torch.sqrt(torch.mean((torch.log(p) - torch.log(g)) ** 2)).item()
    ratio = torch.maximum(p / g, g / p)
    for key, thr in (("δ < 1.25", 1.25), ("δ < 1.25^2", 1.25 ** 2), ("δ < 1.25^3", 1.25 ** 3)):
        out[key] = torch.mean((ratio < thr).float()).item()
    out["valid_pixels"] = float(n)
    return out


def weighted_depth_average(results: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Average per-sequence metrics weighted by ``valid_pixels`` (``np.average``), without that key.

    Results without valid pixels are left out (NaN when none has any); a NaN result makes the average NaN.
    Raises ValueError for an empty list."""
    if not results:
        raise ValueError("no depth results to average")
    used = [r for r in results if r["valid_pixels"] > 0]
    if not used:
        warnings.warn("weighted_depth_average: no result has valid pixels; averages set to NaN", RuntimeWarning,
                      stacklevel=2)
        return {k: float("nan") for k in DEPTH_METRIC_KEYS}
    weights = np.array([r["valid_pixels"] for r in used], dtype=np.float64)
    # a NaN result (non-finite prediction) keeps its weight: the average becomes NaN, never a plausible score
    return {k: float(np.average([r[k] for r in used], weights=weights)) for k in DEPTH_METRIC_KEYS}


def resize_depth(pred: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resize a ``[h, w]`` depth map to ``shape = (H, W)`` with OpenCV bicubic, as the notebook does.

    Bicubic can overshoot near depth edges (even below 0); the metrics clamp only for log/δ.
    """
    import cv2

    pred = np.asarray(pred)
    if pred.shape == tuple(shape):
        return pred
    return cv2.resize(pred, (int(shape[1]), int(shape[0])), interpolation=cv2.INTER_CUBIC)


def decode_png_depth(png: np.ndarray, scale: float) -> np.ndarray:
    """16-bit depth PNG -> float64 metres (``png / scale``; 0 = invalid -> -1). Bonn: 5000, KITTI: 256."""
    depth = np.asarray(png).astype(np.float64) / scale
    depth[np.asarray(png) == 0] = -1.0
    return depth


def evaluate_video_depth(sequences: Mapping[str, tuple[Sequence[np.ndarray], Sequence[np.ndarray]]],
                         **depth_kwargs: Any) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """Video-depth protocol of the notebook: one alignment per sequence, pixel-weighted average.

    Args:
        sequences: ``{name: (pred_frames, gt_frames)}``, each a list of ``[h, w]`` / ``[H, W]`` arrays paired by
            order (counts must match). Every prediction is resized to its GT's size (OpenCV bicubic).
        **depth_kwargs: passed to :func:`depth_evaluation`, e.g. ``**DEPTH_PROTOCOLS['sintel']``.
    Returns:
        (per-sequence metrics in the mapping's order, ``valid_pixels``-weighted average).
    """
    per_seq: dict[str, dict[str, float]] = {}
    for name, (preds, gts) in sequences.items():
        if len(preds) != len(gts) or not preds:
            raise ValueError(f"sequence {name}: {len(preds)} predicted vs {len(gts)} GT frames")
        gt = np.stack([np.asarray(x) for x in gts])
        pred = np.stack([resize_depth(x, gt.shape[1:]) for x in preds])
        per_seq[name] = depth_evaluation(pred, gt, **depth_kwargs).metrics
    return per_seq, weighted_depth_average(list(per_seq.values()))


def evaluate_single_depth(preds: Sequence[np.ndarray], gts: Sequence[np.ndarray], **depth_kwargs: Any
                          ) -> tuple[list[dict[str, float]], dict[str, float]]:
    """Single-frame protocol (NYU cell): per image resize + :func:`depth_evaluation`, pixel-weighted average."""
    if len(preds) != len(gts) or not preds:
        raise ValueError(f"{len(preds)} predictions vs {len(gts)} GT maps")
    results = []
    for pred, gt in zip(preds, gts):
        gt = np.asarray(gt)
        results.append(depth_evaluation(resize_depth(pred, gt.shape), gt, **depth_kwargs).metrics)
    return results, weighted_depth_average(results)
