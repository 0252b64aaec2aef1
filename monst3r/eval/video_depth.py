"""Video-depth evaluation (the original's ``depth_metric.ipynb`` as a command; evaluation spec §7).

    python -m monst3r.eval.video_depth --eval_dataset sintel [--pred_dir results/sintel_video_depth]
        [--eval_data_root .] [--align lad2|median|lstsq|lad|scale] [--max_depth 70|none] [--post_clip_max 70|none]
        [--seq_list S ...] [--output metrics.json] [--device cpu]

Predictions are the per-frame depth maps of ``launch.py --mode=eval_pose --no_crop`` (``<pred_dir>/<seq>/
frame_%04d.npy``, the optimised scene at the working resolution) or, for NYU-v2, the single-frame maps of
``--mode=eval_depth`` (``<pred_dir>/<name>depth.npy``). GT (layouts in :mod:`monst3r.eval.metadata`): Sintel
``.dpt``, Bonn 16-bit PNG / 5000, KITTI 16-bit PNG / 256, NYU ``.npy``.

Protocol (as the notebook): pair prediction and GT frames of a sequence by sorted order (counts must match),
resize every prediction to the GT size with OpenCV bicubic, align the whole sequence at once (one scale, or scale
and shift), compute the metrics, then average the sequences weighted by their numbers of valid pixels. Defaults per
dataset (:data:`monst3r.eval.metrics.DEPTH_PROTOCOLS`): Sintel ``lad2``, cap 70 m, predictions clipped at 70;
Bonn ``lad2``, cap 70 m; KITTI ``lad2``, no cap; NYU median scaling, no cap, per image.

Differences from the notebook (on purpose): prediction folders are matched to Bonn sequences whether they are
named ``<seq>`` (what the pose evaluation writes) or ``rgbd_bonn_<seq>`` (the notebook crashed on the former);
the GT of exactly the predicted sequences is used (the notebook chose the 14 or 23 Sintel sequences from the
number of prediction files); a sequence whose frame counts differ is reported and left out instead of stopping
the run; results go to ``--output`` (default ``<pred_dir>/_video_depth_metrics.json``), not ``tmp.json``.
"""
from __future__ import annotations

import argparse
import glob
import json
import logging
import math
import os
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from monst3r.errors import Monst3rInputError
from monst3r.eval.depth_io import read_gt_depth
from monst3r.eval.metadata import EvalDataset, get_dataset
from monst3r.eval.metrics import DEPTH_METRIC_KEYS, DEPTH_PROTOCOLS, depth_evaluation, resize_depth, \
    weighted_depth_average

log = logging.getLogger(__name__)

__all__ = ["ALIGN_MODES", "VideoDepthResult", "depth_kwargs", "collect_sequences", "evaluate_dataset",
           "format_table", "main"]

#: ``--align`` -> :func:`depth_evaluation` flag (``median`` = the default median scaling).
ALIGN_MODES = {"median": None, "lad2": "align_with_lad2", "lstsq": "align_with_lstsq", "lad": "align_with_lad",
               "scale": "align_with_scale"}
VIDEO_DATASETS = ("sintel", "bonn", "kitti", "nyu", "synthetic")
_UNSET = object()


@dataclass
class VideoDepthResult:
    """Per-sequence metrics (``valid_pixels`` included), their pixel-weighted average and what was left out."""

    dataset: str
    kwargs: dict[str, Any]
    per_seq: dict[str, dict[str, float]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    #: sequences (NYU: images) whose files could not be read or whose metrics are NaN, with the reason
    failed: dict[str, str] = field(default_factory=dict)

    @property
    def average(self) -> dict[str, float]:
        if not self.per_seq:
            return {k: float("nan") for k in DEPTH_METRIC_KEYS}
        return weighted_depth_average(list(self.per_seq.values()))

    def to_json(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "depth_evaluation_kwargs": self.kwargs, "average": self.average,
                "n_sequences": len(self.per_seq), "per_sequence": self.per_seq, "skipped": self.skipped,
                "failed": self.failed}


def depth_kwargs(dataset: str, align: Optional[str] = None, max_depth: Any = _UNSET,
                 post_clip_max: Any = _UNSET) -> dict[str, Any]:
    """:func:`depth_evaluation` keyword arguments: the dataset's protocol, then the overrides.

    ``align`` one of :data:`ALIGN_MODES`; ``max_depth`` / ``post_clip_max`` a number or None (no cap / no clip).
    """
    kw = dict(DEPTH_PROTOCOLS[dataset])
    if align is not None:
        if align not in ALIGN_MODES:
            raise Monst3rInputError(f"unknown alignment {align!r}: use one of {', '.join(ALIGN_MODES)}")
        for flag in ALIGN_MODES.values():
            if flag:
                kw.pop(flag, None)
        if ALIGN_MODES[align]:
            kw[ALIGN_MODES[align]] = True
    if max_depth is not _UNSET:
        kw["max_depth"] = max_depth
    if post_clip_max is not _UNSET:
        if post_clip_max is None:
            kw.pop("post_clip_max", None)
        else:
            kw["post_clip_max"] = post_clip_max
    return kw


def _pred_key_to_seq(dataset: str, key: str) -> str:
    """Prediction folder name -> sequence name (Sintel: strip ``_pred_depth``; Bonn: strip ``rgbd_bonn_``)."""
    if dataset == "sintel":
        return key.replace("_pred_depth", "")
    if dataset == "bonn" and key.startswith("rgbd_bonn_"):
        return key[len("rgbd_bonn_"):]
    return key


def collect_sequences(info: EvalDataset, pred_dir: Path, root: str, seq_list: Optional[Sequence[str]] = None
                      ) -> tuple[dict[str, tuple[list[str], list[str]]], dict[str, str]]:
    """``{seq: (prediction files, GT files)}`` (each sorted) for every prediction folder of ``pred_dir``, plus
    ``{seq: reason}`` for the sequences that cannot be evaluated (no GT, counts differ).

    NYU-v2 is one "sequence" named ``nyu`` holding every image (paired by sorted order).
    """
    if not pred_dir.is_dir():
        raise Monst3rInputError(f"prediction folder {pred_dir} not found: run the pose evaluation with --no_crop "
                                "first (commands in data/evaluation_script.md)")
    found, skipped = {}, {}
    if info.name == "nyu":
        preds = sorted(glob.glob(str(pred_dir / "*.npy")))
        gts = sorted(glob.glob(info.depth_gt_glob(root, "")))
        groups = {"nyu": (preds, gts)}
    else:
        groups = {}
        for sub in sorted(p for p in pred_dir.iterdir() if p.is_dir()):
            preds = sorted(glob.glob(str(sub / "frame_*.npy")))
            if not preds:
                continue
            seq = _pred_key_to_seq(info.name, sub.name)
            if seq_list and seq not in seq_list:
                continue
            groups[seq] = (preds, sorted(glob.glob(info.depth_gt_glob(root, seq))))
    for seq, (preds, gts) in groups.items():
        if not gts:
            skipped[seq] = f"no GT depth matching {info.depth_gt_glob(root, seq)}"
        elif len(preds) != len(gts):
            skipped[seq] = (f"{len(preds)} predicted vs {len(gts)} GT frames (run the pose evaluation with "
                            "--pose_eval_stride 1 on every frame)")
        else:
            found[seq] = (preds, gts)
    for seq, reason in skipped.items():
        log.warning("video depth: sequence %s left out: %s", seq, reason)
    if not found:
        raise Monst3rInputError(f"no sequence of {pred_dir} could be paired with GT depth of {info.name} under "
                                f"{root!r}" + (f" ({'; '.join(f'{k}: {v}' for k, v in skipped.items())})" if skipped
                                               else " (no frame_*.npy prediction folders)")
                                + "; " + info.missing_data_hint())
    return found, skipped


def evaluate_dataset(dataset: str, pred_dir: Optional[str] = None, root: str = ".",
                     seq_list: Optional[Sequence[str]] = None, device: Optional[str] = None,
                     **overrides: Any) -> VideoDepthResult:
    """Video-depth (or NYU single-frame) metrics of ``pred_dir`` against the GT of ``dataset``.

    ``overrides``: ``align``, ``max_depth``, ``post_clip_max`` (see :func:`depth_kwargs`).
    """
    if dataset not in VIDEO_DATASETS:
        raise Monst3rInputError(f"no depth GT for {dataset!r}: video depth supports {', '.join(VIDEO_DATASETS)}")
    info = get_dataset(dataset)
    pred = Path(pred_dir if pred_dir is not None else Path(root) / info.video_depth_dir)
    kw = depth_kwargs(dataset, **overrides)
    groups, skipped = collect_sequences(info, pred, root, seq_list)
    result = VideoDepthResult(dataset=dataset, kwargs=kw, skipped=skipped)
    for seq, (pred_files, gt_files) in groups.items():
        try:  # an unreadable or inconsistent file fails its sequence, never the whole run
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # NaN metrics are recorded as failures below
                if dataset == "nyu":  # one alignment per image, pixel-weighted average over the images
                    for name, gf in zip(pred_files, gt_files):
                        try:
                            g, p = read_gt_depth(gf, info.depth_gt_kind), _load_pred(name)
                            res = depth_evaluation(resize_depth(p, g.shape), g, device=device, **kw)
                        except _FILE_ERRORS as exc:
                            result.failed[Path(name).stem] = _reason(exc)
                            continue
                        result.per_seq[Path(name).stem] = res.metrics
                    continue
                gts = [read_gt_depth(f, info.depth_gt_kind) for f in gt_files]
                preds = [_load_pred(f) for f in pred_files]
                gt = np.stack(gts)
                stack = np.stack([resize_depth(p, gt.shape[1:]) for p in preds])
                result.per_seq[seq] = depth_evaluation(stack, gt, device=device, **kw).metrics
        except _FILE_ERRORS as exc:
            result.failed[seq] = _reason(exc)
    for name, m in result.per_seq.items():
        if any(math.isnan(m[k]) for k in DEPTH_METRIC_KEYS):
            result.failed[name] = ("no valid GT pixel" if not m["valid_pixels"]
                                   else "NaN/inf in the prediction or its alignment: metrics are NaN")
    for name, reason in result.failed.items():
        log.warning("video depth: %s failed: %s", name, reason)
    return result


#: What reading / scoring one sequence may raise for bad files (corrupt .npy / .png / .dpt, sizes that differ).
_FILE_ERRORS = (OSError, ValueError, EOFError, TypeError, IndexError, Monst3rInputError)


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:160]}"


def _load_pred(path: str) -> np.ndarray:
    """A predicted depth map ``[H, W]`` (``.npy``, no pickles)."""
    arr = np.load(path, allow_pickle=False)
    if arr.ndim != 2:
        raise ValueError(f"{path}: expected an [H, W] depth map, got shape {arr.shape}")
    return arr.astype(np.float32, copy=False)


def format_table(result: VideoDepthResult) -> str:
    """Per-sequence rows and the weighted average (δ as fractions, as the original)."""
    keys = DEPTH_METRIC_KEYS
    head = f"{'sequence':<28}" + "".join(f"{k:>12}" for k in keys) + f"{'pixels':>10}"
    rows = [head]
    for seq, m in result.per_seq.items():
        rows.append(f"{seq:<28}" + "".join(f"{m[k]:>12.5f}" for k in keys) + f"{int(m['valid_pixels']):>10}")
    avg = result.average
    rows.append(f"{'average (pixel-weighted)':<28}" + "".join(f"{avg[k]:>12.5f}" for k in keys))
    for seq, reason in result.skipped.items():
        rows.append(f"left out {seq}: {reason}")
    for seq, reason in result.failed.items():
        rows.append(f"failed {seq}: {reason}")
    rows.append(f"{result.dataset}: {len(result.per_seq)} {'images' if result.dataset == 'nyu' else 'sequences'} "
                f"evaluated, {len(result.failed)} failed, {len(result.skipped)} left out; "
                f"depth_evaluation{result.kwargs}")
    return "\n".join(rows)


def _opt_float(text: str) -> Optional[float]:
    if text.lower() in ("none", "null", "off"):
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'none', got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    from monst3r.utils.cli_errors import OneLineArgumentParser

    p = OneLineArgumentParser(prog="python -m monst3r.eval.video_depth",
                                description="Video-depth metrics of pose-evaluation outputs (Sintel, Bonn, KITTI) "
                                            "or single-frame depth (NYU-v2).")
    p.add_argument("--eval_dataset", "--dataset", dest="eval_dataset", required=True, choices=VIDEO_DATASETS)
    p.add_argument("--pred_dir", default=None,
                   help="predictions (default: <eval_data_root>/results/<dataset>_video_depth, NYU results/nyuv2_depth)")
    p.add_argument("--eval_data_root", default=".", help="folder holding data/ (default: working directory)")
    p.add_argument("--align", default=None, choices=sorted(ALIGN_MODES),
                   help="alignment (default: lad2 for videos, median for NYU)")
    p.add_argument("--max_depth", type=_opt_float, default=_UNSET, help="GT depth cap in metres, or none")
    p.add_argument("--post_clip_max", type=_opt_float, default=_UNSET, help="clip aligned predictions, or none")
    p.add_argument("--seq_list", nargs="+", default=None, help="evaluate only these sequences")
    p.add_argument("--output", default=None, help="JSON file (default: <pred_dir>/_video_depth_metrics.json)")
    p.add_argument("--device", default="cpu", help="torch device of the alignment (cpu or cuda)")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command-line entry point; prints the table, writes the JSON; exit status 2 on input errors."""
    from monst3r.utils.cli_errors import error_exit

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    overrides = {k: getattr(args, k) for k in ("max_depth", "post_clip_max") if getattr(args, k) is not _UNSET}
    try:
        from monst3r.runtime import resolve_device

        device = str(resolve_device(args.device))
        result = evaluate_dataset(args.eval_dataset, args.pred_dir, args.eval_data_root, args.seq_list,
                                  device=device, align=args.align, **overrides)
    except Monst3rInputError as exc:
        return error_exit(exc)
    print(format_table(result))
    pred_dir = args.pred_dir or os.path.join(args.eval_data_root, get_dataset(args.eval_dataset).video_depth_dir)
    out = Path(args.output) if args.output else Path(pred_dir) / "_video_depth_metrics.json"
    try:
        from monst3r.io import atomic_file

        with atomic_file(out) as tmp:  # complete or not at all; a link at `out` is replaced, not followed
            tmp.write_text(json.dumps(result.to_json(), indent=1, ensure_ascii=False))
    except (OSError, Monst3rInputError) as exc:
        return error_exit(f"cannot write {out}: {getattr(exc, 'strerror', None) or exc}; choose another --output")
    print(f"metrics written to {out}")
    return exit_status(result)


def exit_status(result: VideoDepthResult) -> int:
    """1 with one ``error:`` line when no sequence (NYU: image) gave metrics, else 0 with a ``warning:`` line
    naming the failed and left-out ones, if any."""
    from monst3r.eval.entry import report_outcome

    bad = {**result.skipped, **result.failed}
    total = len(set(result.per_seq) | set(bad))
    return report_outcome("sequences" if result.dataset != "nyu" else "images", total, bad)


if __name__ == "__main__":
    sys.exit(main())
