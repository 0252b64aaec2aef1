"""The demo run as a library: option checks -> frames -> network -> reconstruction -> one write of the result folder.

``demo.py`` only parses arguments and calls :func:`run_demo` (the GUI, :mod:`monst3r.gui`, does too); tests call the
functions here directly. This module is the demo's entry layer and the last one that sees the demo's
``argparse.Namespace``: its top-level functions read it (:func:`run_demo`, :func:`validate_args`,
:func:`check_inputs` and the private steps of ``run_demo`` that load frames, the previous result and write the
folder) and convert it once into the typed settings (:meth:`monst3r.config.ReconstructConfig.from_demo_args`)
that :func:`monst3r.reconstruct.reconstruct` and :func:`monst3r.streaming.reconstruct_streaming` receive; no
module below them is given the Namespace. Defaults are those of the original's non-interactive run
(spec cli.md 4.1, optimizer.md 11).

``reconstruct``, ``StageTimer``, ``parse_intrinsics`` and ``scene_graph_string`` are re-exported from their
modules for callers that import them from here.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

from monst3r.config import ReconstructConfig, parse_intrinsics, scene_graph_string
from monst3r.errors import Monst3rInputError
from monst3r.model_loading import DEFAULT_HUB_MODEL as DEFAULT_MODEL_NAME  # the hub id, written once there
from monst3r.reconstruct import load_flow_network, predict_pairs, reconstruct
from monst3r.streaming import reconstruct_streaming, stream_chunks
from monst3r.runtime import peak_memory_gib, resolve_device
from monst3r.utils.timing import StageTimer

# re-exported names that callers import from here
__all__ = ["run_demo", "validate_args", "check_inputs", "collect_inputs", "load_network", "parse_export",
           "parse_intrinsics", "scene_graph_string", "reconstruct", "StageTimer", "two_frame_extras", "export_extra",
           "result_dir", "DEFAULT_WEIGHTS", "DEFAULT_MODEL_NAME"]

log = logging.getLogger(__name__)

DEFAULT_WEIGHTS = "checkpoints/MonST3R_PO-TA-S-W_ViTLarge_BaseDecoder_512_dpt.pth"
DAVIS_MASK_ROOT = "data/davis/DAVIS/masked_images/480p"


EXPORT_FORMATS = ("ply", "colmap")


def parse_export(text: Optional[str]) -> List[str]:
    """``--export``: comma-separated subset of :data:`EXPORT_FORMATS` (checked before any work)."""
    if text is None:
        return []
    fmts = [f.strip().lower() for f in str(text).split(",")]
    fmts = [f for f in fmts if f]
    if not fmts:
        raise Monst3rInputError("--export is empty: give ply, colmap or ply,colmap")
    for f in fmts:
        if f not in EXPORT_FORMATS:
            raise Monst3rInputError(f"--export {f!r}: supported formats are ply and colmap (comma separated)")
    return list(dict.fromkeys(fmts))


def result_dir(output_dir, seq_name) -> Path:
    """``<output_dir>/<seq_name>`` after checking that ``seq_name`` is a folder name (or a relative path) that
    stays strictly inside ``output_dir``, symbolic links resolved. Raises :class:`Monst3rInputError`."""
    if output_dir is None or not str(output_dir).strip():
        raise Monst3rInputError("--output_dir is empty: give the folder that receives the result folder")
    name = "" if seq_name is None else str(seq_name)
    hint = "give a plain folder name such as myvideo (it is created inside --output_dir)"
    if not name.strip():
        raise Monst3rInputError(f"--seq_name is empty: {hint}")
    if "\x00" in name or "\x00" in str(output_dir):
        raise Monst3rInputError(f"--seq_name / --output_dir contain a NUL character: {hint}")
    if os.path.isabs(name):
        raise Monst3rInputError(f"--seq_name {name!r} is an absolute path: {hint}")
    parts = [q for q in name.split("/") if q not in ("",)]
    if ".." in parts:
        raise Monst3rInputError(f"--seq_name {name!r} climbs out of --output_dir with '..': {hint}")
    norm = os.path.normpath(name)
    if norm in (".", ""):
        raise Monst3rInputError(f"--seq_name {name!r} names --output_dir itself: {hint}")
    base = Path(output_dir)
    out = base / norm
    base_r, out_r = base.resolve(), out.resolve()
    if out_r == base_r or base_r not in out_r.parents:
        raise Monst3rInputError(f"--seq_name {name!r} resolves to {out_r}, outside --output_dir {base_r} (through a "
                                f"symbolic link): {hint}")
    return out


def _check_number(args, name: str, lo: float, lo_ok: bool = True, hi: Optional[float] = None,
                  hi_ok: bool = True, integer: bool = False, optional: bool = False) -> None:
    v = getattr(args, name, None)
    if v is None and optional:
        return
    bound = (f">= {lo:g}" if lo_ok else f"> {lo:g}") + ("" if hi is None else
                                                      (f" and <= {hi:g}" if hi_ok else f" and < {hi:g}"))
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise Monst3rInputError(f"--{name} {v!r} must be a number {bound}") from None
    ok = np.isfinite(x) and (x >= lo if lo_ok else x > lo) and (hi is None or (x <= hi if hi_ok else x < hi))
    if integer and ok:
        ok = float(x).is_integer()
    if not ok:
        raise Monst3rInputError(f"--{name} {v!r} is out of range: it must be {'an integer' if integer else 'a finite number'} "
                                f"{bound}")


def validate_args(args) -> Path:
    """Every demo option checked before any work (no disk access but symlink resolution); returns the result
    folder. One-line :class:`Monst3rInputError` naming the option and what to give instead."""
    for name, lo, lo_ok, hi, hi_ok, integer in (
            ("num_frames", 1, True, None, True, True), ("winsize", 1, True, None, True, True),
            ("refid", 0, True, None, True, True), ("niter", 1, True, None, True, True),
            ("batch_size", 1, True, None, True, True), ("window_size", 2, True, None, True, True),
            ("fps", 0, True, None, True, False), ("window_overlap_ratio", 0, True, 1, False, False),
            ("min_conf_thr", 0, True, None, True, False), ("temporal_smoothing_weight", 0, True, None, True, False),
            ("translation_weight", 0, True, None, True, False), ("flow_loss_weight", 0, True, None, True, False),
            ("flow_loss_start_iter", 0, True, None, True, False), ("flow_loss_threshold", 0, True, None, True, False)):
        _check_number(args, name, lo, lo_ok, hi, hi_ok, integer)
    _check_number(args, "prev_output_index", 0, integer=True, optional=True)
    _check_number(args, "server_port", 0, hi=65535, integer=True, optional=True)
    streaming, window_wise = getattr(args, "streaming", False), getattr(args, "window_wise", False)
    if args.real_time:
        used = [flag for flag, on in (("--streaming", streaming), ("--window_wise", window_wise),
                                      ("--export", args.export is not None),
                                      ("--intrinsics", args.intrinsics is not None),
                                      ("--prev_output_dir", args.prev_output_dir is not None),
                                      ("--dynamic_masks", args.dynamic_masks is not None),
                                      ("--use_gt_mask", args.use_gt_mask),
                                      ("--use_gt_davis_masks", args.use_gt_davis_masks),
                                      ("--not_batchify", getattr(args, "not_batchify", False)),
                                      ("--flow_weights", getattr(args, "flow_weights", None) is not None),
                                      ("--sam2_checkpoint", getattr(args, "sam2_checkpoint", None) is not None))
                if on]
        if used:
            raise Monst3rInputError(f"{used[0]} is not used by --real_time (feed-forward pointmaps only, no "
                                    "optimisation, no exports): drop one of the two")
    if args.prev_output_dir is not None and not (window_wise or streaming):
        raise Monst3rInputError("--prev_output_dir is only used with --window_wise or --streaming: add one of them")
    if args.prev_output_index is not None and args.prev_output_dir is None:
        raise Monst3rInputError("--prev_output_index needs --prev_output_dir")
    if args.use_gt_davis_masks and (args.seq_name in (None, "NULL") or args.dynamic_masks):
        raise Monst3rInputError("--use_gt_davis_masks reads data/davis/DAVIS/masked_images/480p/<seq_name>: give "
                                "--seq_name <DAVIS sequence> (and no --dynamic_masks)")
    if getattr(args, "flow_weights", None) is not None and float(args.flow_loss_weight) == 0:
        raise Monst3rInputError("--flow_weights is not used with --flow_loss_weight 0 (no optical flow): drop one")
    sam2_ckpt = getattr(args, "sam2_checkpoint", None)
    if sam2_ckpt is not None:
        if getattr(args, "no_sam2", False):
            raise Monst3rInputError("--sam2_checkpoint and --no_sam2 contradict each other: drop one")
        from third_party.sam2_adapter import resolve_sam2_checkpoint

        if not resolve_sam2_checkpoint(sam2_ckpt).is_file():
            raise Monst3rInputError(f"--sam2_checkpoint {sam2_ckpt} does not exist (bash data/download_ckpt.sh "
                                    "fetches the default one; or pass --no_sam2)")
    parse_export(args.export)
    parse_intrinsics(args.intrinsics)
    return result_dir(args.output_dir, args.seq_name)


def check_inputs(src, args) -> None:
    """``--input`` forms: one folder, one video, one image, or several image files (nothing else); masks need
    frame files."""
    from monst3r.utils.image import IMAGE_EXTS, VIDEO_EXTS

    accepted = "give one folder of frames, one video file, or several image files"
    if isinstance(src, list):
        for p in src:
            if os.path.isdir(p):
                raise Monst3rInputError(f"--input got {len(src)} paths and {p} is a folder: {accepted}")
            if str(p).lower().endswith(VIDEO_EXTS):
                raise Monst3rInputError(f"--input got {len(src)} paths and {p} is a video: {accepted}")
            if not str(p).lower().endswith(IMAGE_EXTS):
                raise Monst3rInputError(f"--input {p} is not an image ({', '.join(IMAGE_EXTS)}): {accepted}")
    prev = getattr(args, "prev_output_dir", None)
    if prev is not None:
        from monst3r.io import INTRINSICS_FILE, TRAJ_FILE

        if not os.path.isdir(prev):
            raise Monst3rInputError(f"--prev_output_dir {prev} is not a folder: give the previous window's result "
                                    "folder")
        missing = [n for n in (TRAJ_FILE, INTRINSICS_FILE) if not os.path.isfile(os.path.join(prev, n))]
        if missing:
            raise Monst3rInputError(f"--prev_output_dir {prev} is not a result folder ({missing[0]} missing): give "
                                    "the previous window's result folder")
    if args.dynamic_masks is not None:
        if not os.path.isdir(args.dynamic_masks):
            raise Monst3rInputError(f"--dynamic_masks {args.dynamic_masks} is not a folder (give the folder of "
                                    "per-frame masks, named like the frames)")
        paths = src if isinstance(src, list) else [src]
        videos = [p for p in paths if str(p).lower().endswith(VIDEO_EXTS)]
        if os.path.isdir(str(src)) and not isinstance(src, list):
            videos += [f for f in os.listdir(src) if f.lower().endswith(VIDEO_EXTS)]
        if videos:
            raise Monst3rInputError(f"--dynamic_masks matches masks to frame file names, and {videos[0]} is a "
                                    "video: extract the frames to a folder first, or drop --dynamic_masks")


def load_network(weights: Optional[str], model_name: str, device: torch.device):
    """``--weights`` when that file/folder exists, else the hub repo ``--model_name`` (downloaded on first use)."""
    from monst3r.model import load_model

    if weights and os.path.exists(weights):
        return load_model(weights, device=device)
    if weights and weights != DEFAULT_WEIGHTS:
        raise Monst3rInputError(f"--weights {weights} does not exist (give a .pth file or a model folder)")
    return load_model(model_name, device=device)


def collect_inputs(input_path) -> List[str] | str:
    """``--input``: one folder / video / image, or several image files (a list)."""
    paths = [input_path] if isinstance(input_path, (str, os.PathLike)) else list(input_path)
    if not paths:
        raise Monst3rInputError("--input is empty: give a folder of frames or a video file")
    for p in paths:
        if not str(p).strip():
            raise Monst3rInputError("--input '' is empty: give a folder of frames or a video file")
        if not os.path.exists(p):
            raise Monst3rInputError(f"--input {p} does not exist (give a folder of frames or a video file)")
    return paths[0] if len(paths) == 1 else [str(p) for p in paths]


def check_writable(folder: Path) -> None:
    """Fail early (before any heavy work) when the result folder ``folder`` cannot be written or replaced
    (:func:`monst3r.io.check_result_target`; also cleans up what killed earlier runs left)."""
    from monst3r.io import check_result_target

    check_result_target(folder)


def _load_frames(args, src, streaming: bool) -> Tuple[List[Dict], Optional[dict], int]:
    """Frames (after a previous result's frames with ``--prev_output_dir``) -> ``(views, prev, n_new)``; checks
    the frame count and the settings that depend on it before the slow steps."""
    from monst3r.utils.image import load_images

    mask_root = args.dynamic_masks or (os.path.join(DAVIS_MASK_ROOT, args.seq_name)
                                       if args.use_gt_davis_masks and args.seq_name != "NULL" else None)
    if mask_root and not os.path.isdir(mask_root):
        raise Monst3rInputError(f"dynamic mask folder {mask_root} does not exist")
    prev = None
    imgs: List[Dict] = []
    if (args.window_wise or streaming) and args.prev_output_dir:
        prev = _load_previous_result(args)
        imgs = list(prev["imgs"])
    imgs = load_images(src, size=args.image_size, verbose=not args.silent, dynamic_mask_root=mask_root,
                       fps=args.fps, num_frames=args.num_frames, imgs=imgs)
    n_new = len(imgs) - (len(prev["imgs"]) if prev else 0)
    if n_new < 1 or len(imgs) < 2:
        raise Monst3rInputError(f"{len(imgs)} frame(s) in {args.input}: MonST3R needs at least 2 frames "
                                "(a video or a folder with several images)")
    if len(imgs) == 2 and not args.real_time and args.intrinsics is not None:
        raise Monst3rInputError("--intrinsics is not used with two frames (the pair is aligned without "
                                "optimisation): drop it or give more frames")
    if not args.real_time:  # validate the graph settings before the slow steps
        scene_graph_string(args.scenegraph_type, args.winsize, args.refid, max(len(imgs), 2))
    if streaming:
        stream_chunks(len(imgs), args.window_size, int(args.window_size * args.window_overlap_ratio),
                      len(imgs) - n_new)
    parse_intrinsics(args.intrinsics, imgs[0]["img"].shape[-1], imgs[0]["img"].shape[-2])
    return imgs, prev, n_new


def _load_previous_result(args) -> dict:
    """``--prev_output_dir``: the previous window's frames, poses, depths and intrinsics
    (:func:`monst3r.io.load_prev_video_results`)."""
    from monst3r.io import load_prev_video_results

    try:
        return load_prev_video_results(args.prev_output_dir, int(args.window_size * args.window_overlap_ratio),
                                       args.prev_output_index)
    except Monst3rInputError:
        raise
    except (OSError, ValueError, IndexError) as exc:  # unreadable / malformed files of that folder
        raise Monst3rInputError(f"--prev_output_dir {args.prev_output_dir}: cannot read the previous "
                                f"result ({exc}); give a result folder written by this demo") from None


def _run_real_time(imgs: List[Dict], model, cfg: ReconstructConfig, device: torch.device, timer: StageTimer,
                   out_dir: Path) -> None:
    """``--real_time``: feed-forward pointmaps against the middle frame, no optimisation."""
    from monst3r.image_pairs import make_pairs
    from monst3r.io import result_folder, save_realtime_outputs
    from monst3r.runtime import is_main_process

    pairs = make_pairs(imgs, scene_graph=f"oneref-{len(imgs) // 2}", symmetrize=False)
    with timer("inference"):
        output = predict_pairs(pairs, model, cfg, device)
    if not is_main_process():
        return
    with timer("write"), result_folder(out_dir) as tmp:
        save_realtime_outputs(output, tmp)


def _write_result(result, args, export_formats: List[str], prev: Optional[dict], device: torch.device,
                  timer: StageTimer, out_dir: Path) -> None:
    """One write: the result files, the exports and the two-frame extras are built in a temporary sibling and
    swapped in together (:func:`monst3r.io.result_folder`)."""
    from monst3r.io import result_folder, write_result_files

    with timer("write"), result_folder(out_dir) as tmp:
        write_result_files(result, tmp, min_conf_thr=args.min_conf_thr,
                           enlarge_kernel=5 if args.use_gt_davis_masks else 3)
        export_extra(result, tmp, ",".join(export_formats) or None)
        if result.n_frames == 2 and prev is None:
            two_frame_extras(result, tmp, device)


def _check_run(args) -> Tuple[Path, List[str], List[str] | str, bool]:
    """Every option, then the inputs: ``(result folder, export formats, inputs, streaming)``."""
    out_dir = validate_args(args)
    export_formats = parse_export(args.export)
    streaming = getattr(args, "streaming", False)
    if streaming and args.real_time:
        raise Monst3rInputError("--streaming and --real_time exclude each other; pick one")
    src = collect_inputs(args.input)
    check_inputs(src, args)
    return out_dir, export_formats, src, streaming


def run_demo(args) -> Path:
    """Non-interactive demo run; writes ``<output_dir>/<seq_name>/`` through :func:`monst3r.io.result_folder`
    (complete or not at all; the user's own files in it are kept) and returns that folder.

    Order: every option is validated, then the inputs and the result folder (writable, replaceable; leftovers
    of killed runs cleaned up), then frames, network, inference, optimisation, and one write at the end."""
    from monst3r.runtime import init_distributed_from_env, is_main_process

    out_dir, export_formats, src, streaming = _check_run(args)
    # under `torchrun --nproc_per_node=K demo.py ...` the pairs are shared by K processes (one per GPU); rank 0
    # alone optimises and writes the result
    device = init_distributed_from_env(resolve_device(args.device))
    if is_main_process():
        check_writable(out_dir)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    cfg = ReconstructConfig.from_demo_args(args)
    timer = StageTimer()
    with timer("load"):
        imgs, prev, _ = _load_frames(args, src, streaming)
        model = load_network(args.weights, args.model_name, device)
        # fail early (before the long inference) when the flow weights are missing
        flow_model = load_flow_network(cfg.aligner, device) if not args.real_time and len(imgs) > 2 else None
    if args.real_time:
        _run_real_time(imgs, model, cfg, device, timer, out_dir)
        n = len(imgs)
    else:
        run = reconstruct_streaming if streaming else reconstruct
        result = run(imgs, model, cfg, device=device, timer=timer, prev_video_results=prev,
                     flow_model=flow_model)
        if result is None:  # a helper process of a multi-process run: rank 0 writes
            return out_dir
        _write_result(result, args, export_formats, prev, device, timer, out_dir)
        n = result.n_frames
    if not is_main_process():
        return out_dir
    viewer = "visualizer_monst3r_realtime.py" if args.real_time else "visualizer_monst3r.py"
    print(f"done: {n} frames, {timer.summary()}, peak memory {peak_memory_gib(device):.2f} GiB "
          f"({'GPU' if device.type == 'cuda' else 'RSS'}); result in {out_dir} "
          f"(view: python viser/{viewer} --data {out_dir})")
    return out_dir


def two_frame_extras(result, folder: Path, device: torch.device, flow_model=None) -> None:
    """Exactly two frames: the original's extra motion-mask files (``monst3r.two_frame``) in ``folder``.

    Deliberate difference from the original (spec optimizer.md 7.2): it wrote these files into the output ROOT
    (``--output_dir``), outside the result folder; the demo passes the result folder itself, because nothing
    outside ``<output_dir>/<seq_name>`` is ever touched (one atomic write, re-runs replace them).
    Needs classic RAFT's ``raft-things`` weights; without them a one-line note, nothing else."""
    from monst3r.two_frame import two_frame_motion_mask, write_two_frame_outputs

    if result.frame_shape(0) != result.frame_shape(1):
        return
    if flow_model is None:
        from third_party.raft import load_flow_model
        try:
            flow_model = load_flow_model("raft-things", device)
        except (Monst3rInputError, FileNotFoundError) as err:
            print(f"note: two-frame motion mask files skipped: {err}")
            return
    try:
        masks = two_frame_motion_mask(result, flow_model)
    except ValueError as err:  # degenerate cameras of the pair
        print(f"note: two-frame motion mask files skipped: {err}")
        return
    write_two_frame_outputs(masks, folder)


def export_extra(result, folder: Path, formats: Optional[str]) -> None:
    """``--export ply,colmap``: extra formats next to the original's files (``folder/ply``, ``folder/colmap``)."""
    if not formats:
        return
    from monst3r.io import export_colmap, export_ply_frames

    for fmt in parse_export(formats):
        if fmt == "ply":
            export_ply_frames(result, folder / "ply")
        elif fmt == "colmap":
            export_colmap(result, folder / "colmap")
        else:
            raise Monst3rInputError(f"--export {fmt!r}: supported formats are ply and colmap")
