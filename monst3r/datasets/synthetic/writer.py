"""Writing a scene to disk (the folder layout of the :mod:`monst3r.datasets.synthetic` docstring) and the command
line ``python -m monst3r.datasets.synthetic``."""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from monst3r.datasets.synthetic.config import FORMAT_VERSION, SceneConfig, parse_size
from monst3r.datasets.synthetic.scene import SyntheticScene
from monst3r.errors import Monst3rInputError

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------- writing


def _scene_legacy():
    from monst3r.result_folder import LegacyLayout

    # what a scene folder written before manifests existed holds (the layout of the package docstring)
    return LegacyLayout(files=(r"\d{5}\.png", r"poses\.npy", r"intrinsics\.npy", r"gt_traj\.txt", r"meta\.json"),
                        dirs={"depth": [r"\d{5}\.npy"], "dynamic_masks": [r"\d{5}\.png"]},
                        signature=("meta.json", "gt_traj.txt"))


def write_scene(scene: SyntheticScene, out: Union[str, os.PathLike], overwrite: bool = False) -> Path:
    """Write frames and ground truth into ``out`` (layout in the package docstring).

    Written through :func:`monst3r.result_folder.result_folder` (the project's one write policy): assembled in a
    temporary sibling and swapped in at the end, so an error leaves nothing half-written; with ``overwrite`` the
    files a previous scene wrote are replaced and any other file in ``out`` is kept. Raises
    :class:`Monst3rInputError` if ``out`` is a file or a link, or a non-empty folder and not ``overwrite``.
    """
    from PIL import Image

    from monst3r.eval.trajectory import write_tum
    from monst3r.result_folder import result_folder

    out = Path(out).expanduser()
    if out.is_symlink():
        raise Monst3rInputError(f"output path {out} is a symbolic link: results are never written through links; "
                                "choose another --out")
    if out.exists() and not out.is_dir():
        raise Monst3rInputError(f"output path {out} exists and is not a folder: choose another --out")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise Monst3rInputError(f"output folder {out} exists and is not empty: pass --overwrite or choose another")
    with result_folder(out, legacy=_scene_legacy(), writer="monst3r.datasets.synthetic", flag="--out") as tmp:
        (tmp / "depth").mkdir()
        (tmp / "dynamic_masks").mkdir()
        files = []
        for i in range(scene.num_frames):
            f = scene.frame(i)
            name = f"{i:05d}"
            Image.fromarray(f.rgb).save(tmp / f"{name}.png")
            np.save(tmp / "depth" / f"{name}.npy", f.depth)
            Image.fromarray(f.dynamic_mask.astype(np.uint8) * 255).save(tmp / "dynamic_masks" / f"{name}.png")
            files.append(f"{name}.png")
        np.save(tmp / "poses.npy", scene.poses)
        np.save(tmp / "intrinsics.npy", scene.intrinsics)
        write_tum(tmp / "gt_traj.txt", scene.poses, np.arange(scene.num_frames, dtype=np.float64))
        meta = {"format_version": FORMAT_VERSION, "generator": "monst3r.datasets.synthetic",
                **asdict(scene.config), "frames": files,
                "conventions": "c2w poses, OpenCV axes (x right, y down, z forward); depth = camera z; "
                               "principal point (W/2, H/2); pixel centres at integer coordinates"}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
    return out


# --------------------------------------------------------------------------------------------- command line


def _build_parser() -> argparse.ArgumentParser:
    from monst3r.utils.cli_errors import OneLineArgumentParser

    parser = OneLineArgumentParser(
        prog="python -m monst3r.datasets.synthetic",
        description="Generate a synthetic dynamic scene (RGB frames + exact ground truth).")
    parser.add_argument("--out", required=True, help="output folder (must be absent or empty unless --overwrite)")
    # numbers are parsed by _to_int so that bad values give the one-line Monst3rInputError, not argparse usage
    parser.add_argument("--frames", default="65", help="number of frames (default 65)")
    parser.add_argument("--size", default="512x288", help="WIDTHxHEIGHT, 64x48 .. 512 per side (default 512x288)")
    parser.add_argument("--seed", default="0", help="non-negative seed (default 0)")
    parser.add_argument("--objects", default="3", help="number of moving objects, 0..8 (default 3)")
    parser.add_argument("--static-camera", action="store_true", help="near-static camera (mm jitter)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")
    return parser


def _to_int(flag: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise Monst3rInputError(f"{flag} must be an integer, got {text!r}") from None


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command-line entry point; returns the exit status (0 ok, 2 bad input)."""
    args = _build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        width, height = parse_size(args.size)
        config = SceneConfig(width=width, height=height, num_frames=_to_int("--frames", args.frames),
                             seed=_to_int("--seed", args.seed), static_camera=args.static_camera,
                             num_objects=_to_int("--objects", args.objects))
        start = time.perf_counter()
        out = write_scene(SyntheticScene(config), args.out, overwrite=args.overwrite)
    except Monst3rInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # unwritable --out (permissions, read-only or missing parent, full disk)
        print(f"error: cannot write the scene to {args.out}: {exc.strerror or exc}; choose another --out",
              file=sys.stderr)
        return 2
    logger.info("wrote %d frames (%dx%d, seed %d) to %s in %.1f s", config.num_frames, width, height, config.seed,
                out, time.perf_counter() - start)
    return 0

