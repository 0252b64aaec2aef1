"""Single-frame depth (``launch.py --mode=eval_depth``, evaluation spec §6).

Every image is loaded alone (long side ``--eval_image_size`` = 512, centre crop unless ``--no_crop``), paired with
a copy of itself (``[(a, b), (b, a)]``), and its depth is the mean over the two predictions of the z of its own
pointmap (``pred1['pts3d'][..., 2]``). Written per image into the dataset's output folder:
``<name>depth.npy`` (``float32 [H, W]``; non-PNG inputs: ``<name>.npy``, as the original) and a min-max normalised
8-bit preview ``<stem>depth.png``.

Images per dataset: NYU-v2 every ``*.png`` of ``nyu_images`` -> ``<output_dir>``; KITTI every sequence folder ->
``<output_dir>/<drive>``; Bonn the 5 sequences' ``rgb_110`` (``--full_seq``: every ``*/rgb`` folder) ->
``<output_dir>/<seq>``; ScanNet ``*/color_90/*.jpg`` -> ``<output_dir>/<scene>``; Sintel the 14 (``--full_seq``:
all) sequences -> ``<output_dir>/<seq>``. DAVIS and TUM have no single-frame protocol.

For NYU-v2 the metrics (median scaling, no depth cap, pixel-weighted average over images; the original's notebook
cell) are computed right away when the GT depths are present and printed; for the other datasets run
``python -m monst3r.eval.video_depth`` on the output if needed. Images are split across ``torchrun`` processes.
"""
from __future__ import annotations

import argparse
import copy
import glob
import logging
import os
import sys
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from monst3r.errors import Monst3rInputError
from monst3r.eval.config import DepthEvalConfig
from monst3r.eval.metadata import EvalDataset, get_dataset, list_sequences

log = logging.getLogger(__name__)

__all__ = ["depth_jobs", "predict_depth", "depth_file_names", "save_depth", "run_depth_evaluation", "main"]


def depth_file_names(image_path: str) -> tuple[str, str]:
    """``(depth .npy name, preview .png name)`` of an input image (``00001.png`` -> ``00001depth.npy``)."""
    name = os.path.basename(image_path)
    if name.endswith(".png"):
        return name[:-4] + "depth.npy", name[:-4] + "depth.png"
    stem = os.path.splitext(name)[0]
    return name + ".npy", stem + "depth.png"


def depth_jobs(info: EvalDataset, root: str, output_dir: str, seq_list: Optional[Sequence[str]] = None,
               full_seq: bool = False) -> list[tuple[list[str], Path]]:
    """``[(sorted image paths, output folder)]`` of a dataset (see module docstring)."""
    out = Path(output_dir)
    base = info.root_dir(root)
    if info.name in ("davis", "tum"):
        raise Monst3rInputError(f"--mode=eval_depth has no protocol for {info.name!r}: use nyu, kitti, bonn, "
                                "scannet or sintel (video depth of davis/tum: --mode=eval_pose)")
    if not base.is_dir():
        raise Monst3rInputError(f"evaluation data for {info.name!r} not found: {base} does not exist; "
                                + info.missing_data_hint())
    if info.name == "nyu":
        files = sorted(glob.glob(str(base / "*.png")))
        return [(files, out)] if files else []
    if info.name == "bonn" and full_seq and not seq_list:
        return [(sorted(glob.glob(os.path.join(d, "*.png"))), out / Path(d).parent.name)
                for d in sorted(glob.glob(str(base / "*" / "rgb")))]
    seqs = list_sequences(info, root, seq_list, full_seq)
    jobs = []
    for seq in seqs:
        files = sorted(glob.glob(info.depth_image_glob(root, seq)))
        if files:
            jobs.append((files, out / seq))
    return jobs


@torch.no_grad()
def predict_depth(image_path: str, model: torch.nn.Module, device: torch.device, size: int = 512,
                  crop: bool = True) -> np.ndarray:
    """Depth ``float32 [H, W]`` of one image at the working resolution (mean of the two self-pair predictions)."""
    from monst3r.inference import inference
    from monst3r.utils.image import load_images

    imgs = load_images([image_path], size=size, verbose=False, crop=crop)
    twin = copy.deepcopy(imgs[0])
    twin["idx"] = 1
    pairs = [(imgs[0], twin), (twin, imgs[0])]
    output = inference(pairs, model, device, batch_size=1, verbose=False)
    z = output["pred1"]["pts3d"][..., 2]
    return z.float().mean(dim=0).cpu().numpy().astype(np.float32)


def save_depth(depth: np.ndarray, folder: Path, image_path: str) -> None:
    """Write the depth ``float32 [H, W]`` of ``image_path`` into ``folder``: ``<name>depth.npy`` and the min-max
    normalised 8-bit preview (:func:`depth_file_names`), each replaced atomically."""
    import cv2

    from monst3r.io import atomic_file

    # the images of one folder are split across ranks, so the folder cannot be swapped whole as the other
    # writers do (monst3r.io.result_folder): each file is replaced atomically instead (never half-written, never
    # written through a symbolic link), and nothing else in the folder is touched
    npy_name, png_name = depth_file_names(image_path)
    with atomic_file(folder / npy_name) as tmp:
        np.save(tmp, depth)
    lo, hi = float(np.min(depth)), float(np.max(depth))
    norm = (depth - lo) / (hi - lo) if hi > lo else np.zeros_like(depth)
    with atomic_file(folder / png_name) as tmp:
        if not cv2.imwrite(str(tmp), (norm * 255).astype(np.uint8)):
            raise OSError(f"cannot write {folder / png_name}")


def run_depth_evaluation(cfg: DepthEvalConfig, model: torch.nn.Module, device: torch.device) -> dict:
    """Predict every image of the dataset ``cfg.eval_dataset`` (this process's share); rank 0 then scores NYU-v2
    when its GT exists.

    Returns ``{'n_images', 'jobs', 'metrics', 'n_local', 'failed'}`` where ``metrics`` is a
    :class:`monst3r.eval.video_depth.VideoDepthResult` (NYU with GT) or None, ``n_local`` the number of images
    of this process and ``failed`` ``{image path: reason}`` for those whose depth could not be predicted.
    """
    from monst3r.runtime import barrier, rank_world, split_for_rank, unwrap

    info = get_dataset(cfg.eval_dataset)
    root = cfg.eval_data_root
    jobs = depth_jobs(info, root, cfg.output_dir, cfg.seq_list, cfg.full_seq)
    if not jobs:
        raise Monst3rInputError(f"no images found for {info.name!r} under {info.root_dir(root)}; "
                                + info.missing_data_hint())
    items = [f"{k}\t{p}" for k, (files, _) in enumerate(jobs) for p in files]
    rank, world = rank_world()
    mine = split_for_rank(items, rank, world)
    model = unwrap(model).eval()
    from tqdm.auto import tqdm

    failed: dict[str, str] = {}
    for item in tqdm(mine, disable=not cfg.verbose, desc=f"{info.name} depth", unit="img"):
        k, path = item.split("\t", 1)
        folder = jobs[int(k)][1]
        folder.mkdir(parents=True, exist_ok=True)
        try:  # one unreadable image must not end the run; it is counted and named at the end
            depth = predict_depth(path, model, device, cfg.image_size, crop=cfg.crop)
        except Monst3rInputError as exc:
            failed[path] = str(exc)
            log.warning("depth of %s failed: %s", path, exc)
            continue
        save_depth(depth, folder, path)
    barrier()
    metrics = None
    gt_glob = info.depth_gt_glob(root, "")
    if info.name == "nyu" and rank == 0 and gt_glob and glob.glob(gt_glob):
        from monst3r.eval.video_depth import evaluate_dataset

        metrics = evaluate_dataset("nyu", pred_dir=cfg.output_dir, root=root, device=str(device))
    return {"n_images": len(items), "jobs": [(len(f), str(d)) for f, d in jobs], "metrics": metrics,
            "n_local": len(mine), "failed": failed}


def main(args: argparse.Namespace, model: Optional[torch.nn.Module] = None) -> dict:
    """``launch.py --mode=eval_depth``: set up, predict, print where the maps are (and the NYU metrics)."""
    from monst3r.eval.entry import start_eval_run
    from monst3r.runtime import finish_distributed, init_distributed

    created = init_distributed(args)  # torchrun: fills args.rank/world_size/gpu as the original
    try:
        cfg = DepthEvalConfig.from_args(args)  # the one reading of the flags; only cfg travels further down
        rank, device, model = start_eval_run(cfg, model)
        out = run_depth_evaluation(cfg, model, device)
        if rank == 0:
            print(f"{cfg.eval_dataset}: depth of {out['n_images']} images written under {cfg.output_dir}")
            if out["metrics"] is not None:
                from monst3r.eval.video_depth import format_table

                print(format_table(out["metrics"]))
    finally:
        finish_distributed(created)
    return out


def exit_status(out: dict) -> int:
    """1 when every image of this process failed, else 0 (``warning:`` line naming the failed ones, if any)."""
    from monst3r.eval.entry import report_outcome

    return report_outcome("images", int(out.get("n_local", out["n_images"])), dict(out.get("failed", {})))


def _cli(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m monst3r.eval.depth ...`` (same flags as ``launch.py --mode=eval_depth``)."""
    from monst3r.eval.entry import run_cli

    return run_cli("python -m monst3r.eval.depth", "eval_depth", main, argv)


if __name__ == "__main__":
    sys.exit(_cli())
