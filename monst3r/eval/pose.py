"""Camera-pose evaluation (``launch.py --mode=eval_pose``, evaluation spec §1 and §3).

For every sequence of ``--eval_dataset`` (settings in :mod:`monst3r.eval.metadata`): load the frames (every
``--pose_eval_stride``-th, long side ``--eval_image_size`` = 512, centre crop unless ``--no_crop``), build the
pair graph (``--scene_graph_type``, window shrunk for short sequences, window 4 for DAVIS sequences of more than 95
frames), run the network on every pair (batch 1), globally align with the evaluation's optimizer settings
(optimizer spec §11), clean the point cloud, write the result folder ``<output_dir>/<seq>/``
(:func:`monst3r.io.save_result`, plus ``pred_focal.txt``; enlarged masks with a 5x5 kernel under ``--use_gt_mask``)
and, with a GT trajectory, score the written ``pred_traj.txt`` and write the metrics (ATE, RPE translation, RPE rotation; :func:`monst3r.eval.metrics.pose_metrics`) into
``<output_dir>/<seq>_eval_metric.txt``.

Reported, as the original: ``ATE mean: <a>, RPE trans mean: <t>, RPE rot mean: <r>`` where each mean is taken
over the 6-decimal values of the metric files, followed by how many sequences the means cover. A sequence whose
trajectory is degenerate (static or collinear camera, too few matched poses), whose optimisation fails or
diverges, or that runs out of memory is reported with its reason and counted, never a crash.

Under ``torchrun`` the sequences are split across the processes (rank r takes the r-th block of
``ceil(n / world)``); the records are gathered so that every process returns the same summary, and rank 0
writes ``<output_dir>/_error_log.txt`` and ``<output_dir>/_eval_summary.json``.

Corrections of the original (spec §3 and §10), each on purpose:

* the averages cover exactly the sequences of this run (the original re-read every ``*_metric.txt`` under the
  output folder, including stale files of earlier runs) and say over how many sequences they were taken;
* a degenerate trajectory, a failed or diverged optimisation and any other per-sequence error are recorded (the
  original re-raised all errors except OOM and evo's degenerate-alignment messages);
* with ``--pose_eval_stride`` > 1 the GT trajectory is strided for every format (the original only strided Sintel,
  so other datasets could not be evaluated with a stride);
* sequences of 9 frames or fewer keep the ``-noncyclic`` suffix when their window is shrunk;
* the random seed is derived from ``--seed`` and the sequence name, so a sequence gives the same result whichever
  process evaluates it.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import sys
import time
import warnings
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch

from monst3r.config import ReconstructConfig
from monst3r.eval.config import PoseEvalConfig
from monst3r.errors import Monst3rInputError
from monst3r.eval.metadata import EvalDataset, get_dataset, list_sequences
from monst3r.eval.metrics import metric_file_text, parse_metric_text, pose_metrics
from monst3r.eval.entry import start_eval_run
from monst3r.eval.trajectory import load_traj
from monst3r.reconstruct import DivergedError, load_flow_network, reconstruct
from monst3r.runtime import all_gather, finish_distributed, init_distributed, rank_world, seed_everything, \
    split_for_rank, unwrap

log = logging.getLogger(__name__)

__all__ = ["SequenceRecord", "PoseEvalSummary", "main", "run_pose_evaluation", "evaluate_in_training",
           "evaluate_sequence", "adapt_scene_graph", "list_frames", "format_report"]

IMAGE_EXTS = (".png", ".jpg", ".jpeg")
STATUSES = ("ok", "reused", "degenerate", "failed", "oom", "no_gt")


# ---------------------------------------------------------------------------------------------- records


@dataclass
class SequenceRecord:
    """Outcome of one sequence.

    ``status``: ``ok`` (metrics computed), ``reused`` (ScanNet: output existed, its metric file was read),
    ``degenerate`` (the trajectory cannot be aligned; ``message`` says why), ``failed`` (an error; ``message``),
    ``oom`` (out of memory), ``no_gt`` (reconstructed, the dataset has no GT trajectory).
    ``ate``/``rpe_trans``/``rpe_rot`` (GT units, metres; rotation in degrees) are the 6-decimal values of the metric
    file (what the averages use, as the original); ``*_exact`` the unrounded ones; NaN when not computed.
    """

    seq: str
    status: str
    n_frames: int = 0
    ate: float = math.nan
    rpe_trans: float = math.nan
    rpe_rot: float = math.nan
    ate_exact: float = math.nan
    rpe_trans_exact: float = math.nan
    rpe_rot_exact: float = math.nan
    message: str = ""
    seconds: float = 0.0
    rank: int = 0

    @property
    def evaluated(self) -> bool:
        return self.status in ("ok", "reused")


@dataclass
class PoseEvalSummary:
    """All records of a run plus the averages over the evaluated sequences (NaN when there is none)."""

    dataset: str
    save_dir: str
    records: list[SequenceRecord] = field(default_factory=list)

    @property
    def evaluated(self) -> list[SequenceRecord]:
        return [r for r in self.records if r.evaluated]

    @property
    def averages(self) -> dict[str, float]:
        good = self.evaluated
        return {k: (float(np.mean([getattr(r, k) for r in good])) if good else math.nan)
                for k in ("ate", "rpe_trans", "rpe_rot")}

    def counts(self) -> dict[str, int]:
        return {s: sum(r.status == s for r in self.records) for s in STATUSES}

    def by_seq(self) -> dict[str, SequenceRecord]:
        return {r.seq: r for r in self.records}

    def coverage_line(self) -> str:
        """``averaged over N of M sequences (...)``."""
        c = self.counts()
        parts = [f"{c[s]} {s.replace('_', ' ')}" for s in ("reused", "degenerate", "failed", "oom", "no_gt") if c[s]]
        bad = [r.seq for r in self.records if r.status != "ok"]
        text = f"averaged over {len(self.evaluated)} of {len(self.records)} sequences"
        if parts:
            text += f" ({', '.join(parts)}: {', '.join(bad[:10])}{' ...' if len(bad) > 10 else ''})"
        return text

    def to_json(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "save_dir": self.save_dir, "averages": _jsonable(self.averages),
                "n_sequences": len(self.records), "n_evaluated": len(self.evaluated), "counts": self.counts(),
                "sequences": [_jsonable(asdict(r)) for r in self.records]}


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


# ---------------------------------------------------------------------------------------------- helpers


def adapt_scene_graph(scene_graph: str, n_frames: int, dataset: str = "") -> str:
    """The pair graph used for a sequence of ``n_frames`` (spec §3.2 steps 3 and 5).

    A window larger than ``max(1, ceil((n - 1) / 2))`` is shrunk to it, keeping ``-noncyclic`` (the original
    dropped it: a cyclic graph for 9 frames or fewer). DAVIS sequences of more than 95 frames use window 4 (every
    ``5`` of the string becomes ``4``, as the original).
    """
    parts = scene_graph.split("-")
    max_win = max(1, math.ceil((n_frames - 1) / 2))
    if len(parts) > 1 and parts[1].isdigit() and int(parts[1]) > max_win:
        scene_graph = "-".join([parts[0], str(max_win), *parts[2:]])
    if dataset == "davis" and n_frames > 95:
        scene_graph = scene_graph.replace("5", "4")
    return scene_graph


def list_frames(folder: Path, stride: int = 1) -> list[str]:
    """Image files of a sequence folder, sorted by name, every ``stride``-th."""
    if stride < 1:
        raise Monst3rInputError(f"--pose_eval_stride must be >= 1, got {stride}")
    names = sorted(n for n in os.listdir(folder) if n.lower().endswith(IMAGE_EXTS))
    return [str(folder / n) for n in names][::stride]


def _seed_for(seed: int, seq: str) -> int:
    return (int(seed) * 1_000_003 + zlib.crc32(seq.encode())) % (2 ** 31)


def _gather(records: list[SequenceRecord]) -> list[SequenceRecord]:
    """All processes' records (the same list on every process)."""
    return [SequenceRecord(**d) for part in all_gather([asdict(r) for r in records]) for d in part]


def _gt_focals(info: EvalDataset, root: str, seq: str, frames: list[str], stride: int,
               shape: tuple[int, int]) -> np.ndarray:
    """``--use_gt_focal``: ``focal.txt`` strided and scaled to the loaded resolution."""
    from PIL import Image

    path = info.gt_focal_path(root, seq)
    if not path.is_file():
        raise Monst3rInputError(f"--use_gt_focal: {path} not found (one focal per frame is expected there)")
    focals = np.loadtxt(path, dtype=np.float64).reshape(-1)[::stride]
    with Image.open(frames[0]) as im:
        w0, h0 = im.size
    h1, w1 = shape
    return focals[:len(frames)] * max(h1 / h0, w1 / w0)


_Diverged = DivergedError  # the optimisation produced non-finite poses or loss (monst3r.reconstruct)


# ---------------------------------------------------------------------------------------------- one sequence


def _reconstruct(cfg: ReconstructConfig, info: EvalDataset, root: str, seq: str, frames: list[str],
                 model: torch.nn.Module, device: torch.device, flow_model, *, image_size: int = 512,
                 crop: bool = True, use_gt_focal: bool = False, stride: int = 1):
    """Frames -> ``(Reconstruction, scene graph string)`` (spec §3.2 steps 3-10, without writing) through the
    one reconstruction path (:func:`monst3r.reconstruct.reconstruct`) with the evaluation's settings ``cfg``
    (:meth:`ReconstructConfig.from_eval_args`); the scene graph and the GT focals are set here per sequence."""
    from monst3r.utils.image import load_images

    mask_dir = info.mask_path(root, seq)
    imgs = load_images(frames, size=image_size, verbose=cfg.verbose,
                       dynamic_mask_root=str(mask_dir) if mask_dir is not None and mask_dir.is_dir() else None,
                       crop=crop)
    graph = adapt_scene_graph(cfg.scenegraph_type, len(imgs), info.name)
    focals = None
    if use_gt_focal and len(imgs) > 2:
        shape = tuple(int(v) for v in imgs[0]["true_shape"][0])
        focals = _gt_focals(info, root, seq, frames, stride, shape)
    cfg = dataclasses.replace(cfg, scene_graph=graph, fixed_focals=focals)
    result = reconstruct(imgs, model, cfg, device=device, flow_model=flow_model, offload_model=False)
    return result, graph


def _save_glb(result, path: Path) -> None:
    """``--save_pose_qualitative``: ``<seq>.glb`` as the original (point cloud of the cleaned confidences > 2,
    cameras of size 0.01)."""
    from monst3r.viz import export_glb

    export_glb(result, path, min_conf_thr=2, use_init_conf=False, as_pointcloud=True, cam_size=0.01,
               transparent_cams=False)


def _plot_trajectory(pred_rows: np.ndarray, gt_rows: np.ndarray, metrics, path: Path, seq: str) -> None:
    """Top view of the Sim(3)-aligned prediction and the GT (``<seq>.png``); skipped without matplotlib."""
    try:
        from matplotlib.figure import Figure  # no pyplot: no global backend state
    except ImportError:
        return
    if metrics.alignment is None or len(pred_rows) != len(gt_rows):
        return
    rot, trans, scale = metrics.alignment
    est = scale * pred_rows[:, :3] @ rot.T + trans
    fig = Figure(figsize=(5, 5))
    ax = fig.add_subplot()
    ax.plot(gt_rows[:, 0], gt_rows[:, 2], "k--", label="ground truth")
    ax.plot(est[:, 0], est[:, 2], "b-", label="estimate (Sim(3) aligned)")
    ax.set_xlabel("x [m]")
    ax.set_ylabel("z [m]")
    ax.set_title(f"{seq}: ATE {metrics.ate:.4f}")
    ax.axis("equal")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=80)


def evaluate_sequence(cfg: PoseEvalConfig, info: EvalDataset, seq: str, model: torch.nn.Module,
                      device: torch.device, flow_model, save_dir: Path) -> SequenceRecord:
    """Reconstruct and score one sequence of ``info`` (under ``cfg.eval_data_root``); errors are recorded in the
    returned record, never raised (except ``KeyboardInterrupt``)."""
    from monst3r.eval.trajectory import load_pred_traj
    from monst3r.io import TRAJ_FILE, discard_result, save_result

    start = time.perf_counter()
    root = cfg.eval_data_root
    metric_file = save_dir / f"{seq}_eval_metric.txt"
    out_dir = save_dir / seq
    rec = SequenceRecord(seq=seq, status="failed")
    try:
        if info.skip_existing and out_dir.exists():
            rec.status, rec.message = "reused", f"{out_dir} exists (skipped as the original does)"
            if metric_file.is_file():
                parsed = parse_metric_text(metric_file.read_text())
                rec.ate, rec.rpe_trans, rec.rpe_rot = parsed["ate"], parsed["rpe_trans"], parsed["rpe_rot_deg"]
            else:
                rec.status = "no_gt" if info.traj_format is None else "failed"
                rec.message += "; no metric file to reuse (delete the folder to evaluate it again)"
            return rec
        if metric_file.exists():
            metric_file.unlink()  # never report a stale number
        # nor leave stale depth maps for the video-depth evaluation: remove the files an earlier run wrote (only
        # those; anything else in the folder is the user's and stays -- monst3r.io write policy)
        discard_result(out_dir)
        stride = cfg.stride
        frames = list_frames(info.sequence_dir(root, seq), stride)
        rec.n_frames = len(frames)
        if len(frames) < 2:
            raise Monst3rInputError(f"{len(frames)} frame(s) after stride {stride}: at least 2 are needed")
        seed_everything(_seed_for(cfg.seed, seq))
        result, graph = _reconstruct(cfg.reconstruct.with_sintel_flow(info.sintel_flow), info, root, seq, frames,
                                     model, device, flow_model, image_size=cfg.image_size, crop=cfg.crop,
                                     use_gt_focal=cfg.use_gt_focal, stride=stride)
        save_result(result, out_dir, glb=False, focal_file=True, enlarge_kernel=5 if cfg.use_gt_mask else 3)
        if cfg.save_qualitative:
            _save_glb(result, save_dir / f"{seq}.glb")
        pred_rows, _ = load_pred_traj(out_dir / TRAJ_FILE)  # score exactly what was written
        gt_path = info.gt_traj_path(root, seq)
        if gt_path is None:
            rec.status, rec.message = "no_gt", f"no ground-truth trajectory for {info.name}"
            return rec
        if not gt_path.exists():
            raise Monst3rInputError(f"GT trajectory {gt_path} not found; " + info.missing_data_hint())
        gt_rows, gt_ts = load_traj(gt_path, info.traj_format, stride=stride)
        with warnings.catch_warnings():  # a degenerate trajectory is recorded (and logged) below
            warnings.simplefilter("ignore", RuntimeWarning)
            metrics = pose_metrics(pred_rows, gt_rows, gt_timestamps=gt_ts, seq=seq)
        if metrics.degenerate:
            rec.status, rec.message = "degenerate", str(metrics.reason)
            return rec
        text = metric_file_text(seq, metrics)
        metric_file.write_text(text)
        parsed = parse_metric_text(text)
        rec.status = "ok"
        rec.ate, rec.rpe_trans, rec.rpe_rot = parsed["ate"], parsed["rpe_trans"], parsed["rpe_rot_deg"]
        rec.ate_exact, rec.rpe_trans_exact, rec.rpe_rot_exact = metrics.as_tuple()
        rec.message = f"graph {graph}"
        _plot_trajectory(pred_rows, gt_rows, metrics, save_dir / f"{seq}.png", seq)
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # noqa: BLE001 - one sequence must never stop the evaluation
        is_oom = isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc)
        rec.status = "oom" if is_oom else "failed"
        rec.message = f"{type(exc).__name__}: {exc}"
        if is_oom:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            log.error("OOM error in sequence %s, skipping this sequence.", seq)
        elif isinstance(exc, (Monst3rInputError, _Diverged)):
            log.error("Exception in sequence %s: %s", seq, rec.message)
        else:
            log.exception("Exception in sequence %s: %s", seq, rec.message)
    finally:
        rec.seconds = time.perf_counter() - start
    return rec


# ---------------------------------------------------------------------------------------------- logs and report


def _error_log_lines(dataset: str, rec: SequenceRecord) -> str:
    """The original's per-sequence lines, or one line saying why there are no metrics."""
    if rec.evaluated:
        return (f"{dataset}-{rec.seq: <16} | ATE: {rec.ate:.5f}, RPE trans: {rec.rpe_trans:.5f}, "
                f"RPE rot: {rec.rpe_rot:.5f}\n{rec.ate:.5f}\n{rec.rpe_trans:.5f}\n{rec.rpe_rot:.5f}\n")
    return f"{dataset}-{rec.seq: <16} | {rec.status.upper()}: {rec.message}\n"


def format_report(summary: PoseEvalSummary) -> str:
    """Per-sequence table, the original's mean line and the coverage line."""
    lines = [f"{'sequence':<24} {'status':<10} {'frames':>6} {'ATE':>10} {'RPE trans':>10} {'RPE rot':>10}"]
    for r in summary.records:
        nums = (f"{r.ate:>10.5f} {r.rpe_trans:>10.5f} {r.rpe_rot:>10.5f}" if r.evaluated
                else f"{'-':>10} {'-':>10} {'-':>10}")
        lines.append(f"{r.seq:<24} {r.status:<10} {r.n_frames:>6} {nums}" + ("" if r.evaluated or not r.message
                                                                             else f"  {r.message[:120]}"))
    avg = summary.averages
    lines.append(f"ATE mean: {avg['ate']}, RPE trans mean: {avg['rpe_trans']}, RPE rot mean: {avg['rpe_rot']}")
    lines.append(f"{summary.dataset}: {summary.coverage_line()}")
    return "\n".join(lines)


def _write_logs(summary: PoseEvalSummary, save_dir: Path, rank: int, local: list[SequenceRecord]) -> None:
    (save_dir / f"_error_log_{rank}.txt").write_text("".join(_error_log_lines(summary.dataset, r) for r in local))
    if rank != 0:
        return
    avg = summary.averages
    with open(save_dir / "_error_log.txt", "a") as f:
        for r in summary.records:
            f.write(_error_log_lines(summary.dataset, r))
        f.write(f"Average ATE: {avg['ate']:.5f}, Average RPE trans: {avg['rpe_trans']:.5f}, "
                f"Average RPE rot: {avg['rpe_rot']:.5f} ({summary.coverage_line()})\n")
    (save_dir / "_eval_summary.json").write_text(json.dumps(summary.to_json(), indent=1))


# ---------------------------------------------------------------------------------------------- drivers


def run_pose_evaluation(cfg: PoseEvalConfig, model: torch.nn.Module, device: torch.device,
                        save_dir: Optional[str] = None, flow_model: Optional[torch.nn.Module] = None
                        ) -> PoseEvalSummary:
    """Evaluate every sequence of ``cfg.eval_dataset`` with ``model`` (any callable module returning
    ``(pred1, pred2)``); sequences are split across ``torch.distributed`` ranks when a process group exists.
    ``flow_model``: the optical-flow network of the optimizer (default: RAFT-sintel for Sintel, else SEA-RAFT,
    loaded from ``data/download_ckpt.sh``'s checkpoints); unused with ``--flow_loss_weight 0``.

    Returns the gathered :class:`PoseEvalSummary` (the same on every rank). Raises :class:`Monst3rInputError`
    before any work for a missing dataset, sequence or flow checkpoint.
    """
    info = get_dataset(cfg.eval_dataset)
    if info.name == "nyu":
        raise Monst3rInputError("NYU-v2 holds single images, not videos: use --mode=eval_depth --eval_dataset=nyu")
    save = Path(save_dir if save_dir is not None else cfg.output_dir)
    seqs = list_sequences(info, cfg.eval_data_root, cfg.seq_list, cfg.full_seq)
    if cfg.max_seqs:
        seqs = seqs[:cfg.max_seqs]
    rank, world = rank_world()
    mine = split_for_rank(seqs, rank, world)
    save.mkdir(parents=True, exist_ok=True)
    if cfg.flow_loss_weight <= 0:
        flow_model = None
    elif flow_model is None:
        flow_model = load_flow_network(cfg.reconstruct.with_sintel_flow(info.sintel_flow).aligner, device)
    model = unwrap(model)
    was_training = model.training
    model.eval()
    log.info("pose evaluation of %s: %d sequences (%d on rank %d of %d) -> %s", info.name, len(seqs), len(mine),
             rank, world, save)
    local = []
    evo_log = logging.getLogger("evo")
    evo_level = evo_log.level
    evo_log.setLevel(logging.WARNING)  # evo logs every result table; ours is printed at the end
    try:
        for seq in mine:
            rec = evaluate_sequence(cfg, info, seq, model, device, flow_model, save)
            rec.rank = rank
            local.append(rec)
            level = logging.INFO if rec.evaluated or rec.status == "no_gt" else logging.WARNING
            log.log(level, "%s-%s: %s%s (%.1f s)", info.name, seq, rec.status,
                    f" ATE {rec.ate:.5f}" if rec.evaluated else f" ({rec.message})", rec.seconds)
    finally:
        model.train(was_training)
        evo_log.setLevel(evo_level)
    records = _gather(local)
    order = {s: k for k, s in enumerate(seqs)}
    records.sort(key=lambda r: order.get(r.seq, len(order)))
    summary = PoseEvalSummary(dataset=info.name, save_dir=str(save), records=records)
    _write_logs(summary, save, rank, local)
    return summary


def evaluate_in_training(args: argparse.Namespace, model: torch.nn.Module, device: torch.device,
                         save_dir: str) -> Optional[float]:
    """Pose evaluation during training (``--pose_eval_freq``): the mean ATE, or None when no sequence could be
    scored (no GT, all degenerate/failed), which must not count as a best pose. ``args``: the training's parsed
    flags (this is the training's entry into the evaluation: they become a :class:`PoseEvalConfig` here)."""
    summary = run_pose_evaluation(PoseEvalConfig.from_args(args), model, device, save_dir)
    if rank_world()[0] == 0:
        print(format_report(summary), flush=True)
    ate = summary.averages["ate"]
    return ate if summary.evaluated and math.isfinite(ate) else None


def main(args: argparse.Namespace, model: Optional[torch.nn.Module] = None,
         flow_model: Optional[torch.nn.Module] = None) -> PoseEvalSummary:
    """``launch.py --mode=eval_pose``: set up (distributed, seeds, model), evaluate, print the report on rank 0.

    ``model``: any callable module returning ``(pred1, pred2)`` (tests pass an ideal network); default: built from
    ``--model`` / ``--pretrained``. ``flow_model``: see :func:`run_pose_evaluation`.
    """
    created = init_distributed(args)  # torchrun: fills args.rank/world_size/gpu as the original
    try:
        cfg = PoseEvalConfig.from_args(args)  # the one reading of the flags; only cfg travels further down
        rank, device, model = start_eval_run(cfg, model)
        summary = run_pose_evaluation(cfg, model, device, flow_model=flow_model)
        if rank == 0:
            print(format_report(summary), flush=True)
    finally:
        finish_distributed(created)
    return summary


#: Record statuses that count as a failed sequence in the exit status.
FAILED_STATUSES = ("failed", "oom", "degenerate")


def exit_status(summary: PoseEvalSummary) -> int:
    """1 (with one ``error:`` line on rank 0) when every sequence failed, else 0 (a ``warning:`` line with the
    count and names of the failed ones, if any). See :func:`monst3r.eval.entry.report_outcome`."""
    import io

    from monst3r.eval.entry import report_outcome
    from monst3r.runtime import rank_world

    failed = {r.seq: f"{r.status}: {r.message}" if r.message else r.status
              for r in summary.records if r.status in FAILED_STATUSES}
    stream = None if rank_world()[0] == 0 else io.StringIO()
    return report_outcome("sequences", len(summary.records), failed, stream=stream)


def _cli(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m monst3r.eval.pose ...`` (same flags as ``launch.py --mode=eval_pose``)."""
    from monst3r.eval.entry import run_cli

    return run_cli("python -m monst3r.eval.pose", "eval_pose", main, argv)


if __name__ == "__main__":
    sys.exit(_cli())
