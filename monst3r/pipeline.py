"""The demo pipeline as a library: frames -> views -> pairs -> predictions -> scene -> result -> writers.

``demo.py`` only parses arguments and calls :func:`run_demo`; tests call the functions here directly.
Defaults are those of the original's non-interactive run (spec cli.md 4.1, optimizer.md 11).
"""
from __future__ import annotations

import logging
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch

from monst3r.errors import Monst3rInputError
from monst3r.utils.device import peak_memory_gib, resolve_device

log = logging.getLogger(__name__)

DEFAULT_WEIGHTS = "checkpoints/MonST3R_PO-TA-S-W_ViTLarge_BaseDecoder_512_dpt.pth"
DEFAULT_MODEL_NAME = "Junyi42/MonST3R_PO-TA-S-W_ViTLarge_BaseDecoder_512_dpt"
DAVIS_MASK_ROOT = "data/davis/DAVIS/masked_images/480p"


@dataclass
class StageTimer:
    """Wall time per named stage (seconds)."""

    times: Dict[str, float] = field(default_factory=dict)

    def __call__(self, name: str):
        timer = self

        class _Ctx:
            def __enter__(self):
                self.t = time.perf_counter()

            def __exit__(self, *exc):
                timer.times[name] = timer.times.get(name, 0.0) + time.perf_counter() - self.t

        return _Ctx()

    def summary(self) -> str:
        return ", ".join(f"{k} {v:.1f}s" for k, v in self.times.items())


def scene_graph_string(scenegraph_type: str, winsize: int, refid: int, n_frames: int) -> str:
    """GUI/CLI settings -> make_pairs string (``swinstride`` -> ``swinstride-5-noncyclic``, ...)."""
    if scenegraph_type in ("swin", "swinstride", "swin2stride"):
        return f"{scenegraph_type}-{winsize}-noncyclic"
    if scenegraph_type == "oneref":
        if not 0 <= refid < n_frames:
            raise Monst3rInputError(f"--refid {refid} is out of range for {n_frames} frames")
        return f"oneref-{refid}"
    if scenegraph_type == "complete":
        return "complete"
    raise Monst3rInputError(f"unknown --scenegraph_type {scenegraph_type!r}: use complete, swin, swinstride, "
                            "swin2stride or oneref")


def parse_intrinsics(text: Optional[str], width: int, height: int) -> Optional[np.ndarray]:
    """``--intrinsics``: ``"f"`` (focal in working-resolution pixels, pp at the centre), ``"fx,fy,cx,cy"``, or a
    path to a text file with a 3x3 K (9 numbers). Returns ``K [3,3]`` or None."""
    if not text:
        return None
    if os.path.isfile(text):
        vals = np.loadtxt(text, dtype=np.float64).reshape(-1)
        if vals.size != 9:
            raise Monst3rInputError(f"--intrinsics file {text} must hold 9 numbers (a 3x3 K)")
        return vals.reshape(3, 3)
    try:
        vals = [float(v) for v in text.replace(" ", "").split(",")]
    except ValueError:
        raise Monst3rInputError(f"--intrinsics {text!r}: give a focal 'f', 'fx,fy,cx,cy' or a K file") from None
    if len(vals) == 1:
        vals = [vals[0], vals[0], width / 2, height / 2]
    if len(vals) != 4 or min(vals[:2]) <= 0:
        raise Monst3rInputError(f"--intrinsics {text!r}: give a focal 'f', 'fx,fy,cx,cy' or a K file")
    fx, fy, cx, cy = vals
    return np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], np.float64)


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
    for p in paths:
        if not os.path.exists(p):
            raise Monst3rInputError(f"--input {p} does not exist (give a folder of frames or a video file)")
    return paths[0] if len(paths) == 1 else [str(p) for p in paths]


def check_writable(folder: Path) -> None:
    """Fail early (before any heavy work) when the output folder cannot be written."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise Monst3rInputError(f"cannot write to --output_dir {folder}: {exc.strerror or exc}; choose another "
                                "folder") from None


def _flow_model(args, device):
    if args.flow_loss_weight <= 0:
        return None
    from third_party.raft import load_flow_model

    return load_flow_model(args.flow_weights or "searaft", device)


def _dtype(args):
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[getattr(args, "dtype", "fp32")]


def reconstruct(imgs: List[Dict], model, args, device: torch.device, timer: StageTimer,
                prev_video_results: Optional[dict] = None, flow_model=None, offload_model: bool = True,
                predict=None, flows_fn=None, aligner_kw: Optional[dict] = None):
    """Run inference and global alignment on view dicts; returns ``(Reconstruction, scene)``.

    predict: optional ``callable(pairs) -> inference()-style output`` used instead of running ``model``
    (tests feed ideal predictions of synthetic scenes through it).
    flows_fn: optional ``callable(pairs) -> (flow_ij, flow_ji, valid_i, valid_j)`` (``[E, 2, H, W]`` /
    ``[E, 1, H, W]``, one row per pair) used instead of running the flow network inside the optimizer.
    aligner_kw: extra ``global_aligner`` options (e.g. ``sam2_predictor``).

    offload_model: on CUDA, move the network to the CPU after inference to give its memory to the optimizer
    (the streaming mode keeps it, as it needs it again for the next chunk)."""
    from monst3r.cloud_opt import GlobalAlignerMode, global_aligner
    from monst3r.image_pairs import make_pairs
    from monst3r.inference import inference_distributed as inference  # plain inference in a single process
    from monst3r.utils.device import is_main_process

    if len(imgs) == 1:
        import copy

        imgs = [imgs[0], copy.deepcopy(imgs[0])]
        imgs[1]["idx"] = 1
    graph = scene_graph_string(args.scenegraph_type, args.winsize, args.refid, len(imgs))
    pairs = make_pairs(imgs, scene_graph=graph, prefilter=None, symmetrize=True)
    with timer("inference"):
        if predict is not None:
            output = predict(pairs)
        else:
            output = inference(pairs, model, device, batch_size=args.batch_size, verbose=not args.silent,
                               dtype=_dtype(args))
    if not is_main_process():
        return None, None  # multi-process run: the other ranks only share the pair inference
    if device.type == "cuda" and offload_model and model is not None:
        with timer("offload"):
            # the network is not needed any more: give its ~2.3 GB of GPU memory to the optimizer
            model.to("cpu")
            torch.cuda.empty_cache()
    if len(imgs) == 2:
        with timer("alignment"):
            scene = global_aligner(output, device=device, mode=GlobalAlignerMode.PairViewer, verbose=not args.silent)
        return scene.result(), scene
    use_user_masks = bool(args.dynamic_masks) or args.use_gt_davis_masks or args.use_gt_mask
    with timer("flow+masks"):
        flows = None
        if flows_fn is not None and args.flow_loss_weight > 0:
            flows = flows_fn(pairs)
        elif flow_model is None:
            flow_model = _flow_model(args, device)
        scene = global_aligner(
            output, device=device, mode=GlobalAlignerMode.PointCloudOptimizer, verbose=not args.silent,
            shared_focal=args.shared_focal, temporal_smoothing_weight=args.temporal_smoothing_weight,
            translation_weight=float(args.translation_weight), flow_loss_weight=args.flow_loss_weight,
            flow_loss_start_epoch=args.flow_loss_start_iter, flow_loss_thre=args.flow_loss_threshold,
            use_self_mask=not use_user_masks, num_total_iter=args.niter,
            batchify=not (args.not_batchify or args.window_wise), window_wise=args.window_wise,
            window_size=args.window_size, window_overlap_ratio=args.window_overlap_ratio,
            prev_video_results=prev_video_results, flow_model=flow_model, flows=flows,
            sam2_mask_refine=not args.no_sam2, sam2_checkpoint=args.sam2_checkpoint, **(aligner_kw or {}))
        del flow_model, flows
    K = parse_intrinsics(args.intrinsics, imgs[0]["img"].shape[-1], imgs[0]["img"].shape[-2])
    if K is not None:
        scene.preset_intrinsics([torch.as_tensor(K, dtype=torch.float32)] * len(imgs))
    with timer("optimization"):
        kw = dict(init="mst", niter=args.niter, schedule=args.schedule, lr=0.01)
        if args.window_wise:
            scene.compute_window_wise_alignment(**kw)
        else:
            scene.compute_global_alignment(**kw)
    with timer("post"):
        if prev_video_results is not None:
            scene.clean_prev_results()
        scene.clean_pointcloud()
        rec = scene.result()
    return rec, scene


def run_demo(args) -> Path:
    """Non-interactive demo run; writes ``<output_dir>/<seq_name>/`` atomically and returns that folder."""
    from monst3r.utils.image import load_images

    from monst3r.utils.device import init_distributed_from_env, is_main_process

    # under `torchrun --nproc_per_node=K demo.py ...` the pairs are shared by K processes (one per GPU); rank 0
    # alone optimises and writes the result
    device = init_distributed_from_env(resolve_device(args.device))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    timer = StageTimer()
    out_dir = Path(args.output_dir) / args.seq_name
    src = collect_inputs(args.input)
    check_writable(out_dir.parent)
    with timer("load"):
        mask_root = args.dynamic_masks or (os.path.join(DAVIS_MASK_ROOT, args.seq_name)
                                           if args.use_gt_davis_masks and args.seq_name != "NULL" else None)
        if mask_root and not os.path.isdir(mask_root):
            raise Monst3rInputError(f"dynamic mask folder {mask_root} does not exist")
        prev = None
        imgs: List[Dict] = []
        streaming = getattr(args, "streaming", False)
        if streaming and args.real_time:
            raise Monst3rInputError("--streaming and --real_time exclude each other; pick one")
        if (args.window_wise or streaming) and args.prev_output_dir:
            from monst3r.io import load_prev_video_results

            prev = load_prev_video_results(args.prev_output_dir, int(args.window_size * args.window_overlap_ratio),
                                           args.prev_output_index)
            imgs = list(prev["imgs"])
        imgs = load_images(src, size=args.image_size, verbose=not args.silent, dynamic_mask_root=mask_root,
                           fps=args.fps, num_frames=args.num_frames, imgs=imgs)
        n_new = len(imgs) - (len(prev["imgs"]) if prev else 0)
        if n_new < 1 or len(imgs) < 2:
            raise Monst3rInputError(f"{len(imgs)} frame(s) in {args.input}: MonST3R needs at least 2 frames "
                                    "(a video or a folder with several images)")
        if not args.real_time:  # validate the graph settings before the slow steps
            scene_graph_string(args.scenegraph_type, args.winsize, args.refid, max(len(imgs), 2))
        if streaming:
            from monst3r.streaming import stream_chunks
            stream_chunks(len(imgs), args.window_size, int(args.window_size * args.window_overlap_ratio),
                          len(imgs) - n_new)
        parse_intrinsics(args.intrinsics, imgs[0]["img"].shape[-1], imgs[0]["img"].shape[-2])
        model = load_network(args.weights, args.model_name, device)
        # fail early (before the long inference) when the flow weights are missing
        flow_model = _flow_model(args, device) if not args.real_time and len(imgs) > 2 else None
    if args.real_time:
        from monst3r.image_pairs import make_pairs
        from monst3r.inference import inference_distributed as inference
        from monst3r.io import atomic_folder, save_realtime_outputs

        pairs = make_pairs(imgs, scene_graph=f"oneref-{len(imgs) // 2}", symmetrize=False)
        with timer("inference"):
            output = inference(pairs, model, device, batch_size=args.batch_size, verbose=not args.silent,
                               dtype=_dtype(args))
        if not is_main_process():
            return out_dir
        with timer("write"), atomic_folder(out_dir) as tmp:
            save_realtime_outputs(output, tmp)
        n = len(imgs)
    else:
        if streaming:
            from monst3r.streaming import reconstruct_streaming
            result, _ = reconstruct_streaming(imgs, model, args, device, timer, prev, flow_model)
        else:
            result, _ = reconstruct(imgs, model, args, device, timer, prev, flow_model)
        if result is None:  # a helper process of a multi-process run: rank 0 writes
            return out_dir
        with timer("write"):
            from monst3r.io import save_result

            # atomic: built in a temporary sibling folder and renamed (nothing half-written on error)
            save_result(result, out_dir, min_conf_thr=args.min_conf_thr,
                        enlarge_kernel=5 if args.use_gt_davis_masks else 3)
            export_extra(result, out_dir, args.export)
            if result.n_frames == 2 and prev is None:
                two_frame_extras(result, out_dir.parent, device)
        n = result.n_frames
    viewer = "visualizer_monst3r_realtime.py" if args.real_time else "visualizer_monst3r.py"
    print(f"done: {n} frames, {timer.summary()}, peak memory {peak_memory_gib(device):.2f} GiB "
          f"({'GPU' if device.type == 'cuda' else 'RSS'}); result in {out_dir} "
          f"(view: python viser/{viewer} --data {out_dir})")
    return out_dir


def two_frame_extras(result, folder: Path, device: torch.device, flow_model=None) -> None:
    """Exactly two frames: the original's extra motion-mask files (``monst3r.two_frame``) in ``folder`` (the
    output root). Needs classic RAFT's ``raft-things`` weights; without them a one-line note, nothing else."""
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
    write_two_frame_outputs(two_frame_motion_mask(result, flow_model), folder)


def export_extra(result, folder: Path, formats: Optional[str]) -> None:
    """``--export ply,colmap``: extra formats next to the original's files."""
    if not formats:
        return
    from monst3r.io import export_colmap, export_ply_frames

    for fmt in [f.strip().lower() for f in formats.split(",") if f.strip()]:
        if fmt == "ply":
            export_ply_frames(result, folder / "ply")
        elif fmt == "colmap":
            export_colmap(result, folder / "colmap")
        else:
            raise Monst3rInputError(f"--export {fmt!r}: supported formats are ply and colmap")
