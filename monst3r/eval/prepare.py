"""Preparation of the evaluation sets (derived folders the evaluation reads; evaluation spec §2).

Each function works on the raw download (``bash data/download_<x>.sh``) and is idempotent: existing outputs are
replaced. Command-line wrappers: ``python data/prepare_eval_<x>.py [--root ...]`` (run from the repository root),
each a call of :func:`prepare_main`.

* :func:`prepare_bonn`: every ``rgbd_bonn_*``: sorted ``rgb/*.png`` ``[30:140]`` -> ``rgb_110/``, sorted
  ``depth/*.png`` ``[30:140]`` -> ``depth_110/``, GT rows ``[30:140]`` -> ``groundtruth_110.txt``
  (rows are assumed to correspond 1:1 to the frames, as the original does).
* :func:`prepare_tum`: per sequence, associate ``rgb.txt`` and ``groundtruth.txt`` (greedy closest pairs with
  ``|dt| < 0.02`` s, each stamp used once, sorted), keep every 3rd match, the first 90: frames -> ``rgb_90/``,
  ``groundtruth_90.txt`` lines ``<gt stamp> tx ty tz qx qy qz qw`` (GT text fields verbatim).
* :func:`prepare_scannet`: per scene, frames sorted numerically, ``[:270:3]`` (90): ``color/*.jpg`` ->
  ``color_90/frame_%04d.jpg``, ``depth/*.png`` -> ``depth_90/frame_%04d.png``, ``pose/*.txt`` (4x4 c2w) flattened
  to 16 numbers per line -> ``pose_90.txt``.
* :func:`prepare_kitti`: per drive of ``val/``: the first 110 GT depth PNGs (``proj_depth/groundtruth/image_02``)
  -> ``depth_selection/val_selection_cropped/groundtruth_depth_gathered/<drive>_02/`` and the raw frames of the
  same names (``<date>/<drive>/image_02/data``) -> ``.../image_gathered/<drive>_02/``.
* :func:`prepare_nyuv2`: every ``*.h5`` (``depth`` [H, W] metres, ``rgb`` [3, H, W]) -> ``nyu_images/<name>.png``,
  ``nyu_depths/<name>.npy`` and a preview ``nyu_depth_imgs/<name>.png``.
* :func:`sintel_dynamic_labels`: per pair of consecutive frames, the flow camera motion alone would cause (GT depth
  and cameras) against the GT optical flow; ``|flow_gt - flow_rigid| > threshold`` = dynamic, 0/255 PNG per frame
  (the last frame of a sequence gets none).
"""
from __future__ import annotations

import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np

from monst3r.errors import Monst3rInputError

log = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]

__all__ = ["associate", "prepare_bonn", "prepare_tum", "prepare_scannet", "prepare_kitti", "prepare_nyuv2",
           "read_flo", "rigid_flow", "sintel_dynamic_labels", "prepare_main"]


def _require_dir(path: Path, what: str, script: str) -> Path:
    if not path.is_dir():
        raise Monst3rInputError(f"{what} not found at {path}: download it first with `{script}` "
                                "(see data/evaluation_script.md) or pass --root")
    return path


def _fresh_dir(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def _numeric_key(path: Path) -> tuple[int, str]:
    digits = re.findall(r"\d+", path.stem)
    return (int(digits[-1]) if digits else -1, path.name)


# ------------------------------------------------------------------------------------------------ Bonn


def prepare_bonn(root: PathLike = "data/bonn/rgbd_bonn_dataset", start: int = 30, end: int = 140) -> list[str]:
    """Build ``rgb_110``, ``depth_110`` and ``groundtruth_110.txt`` in every ``rgbd_bonn_*`` folder; returns them."""
    base = _require_dir(Path(root), "the Bonn RGB-D dynamic dataset", "bash data/download_bonn.sh")
    done = []
    for seq in sorted(p for p in base.iterdir() if p.is_dir() and p.name.startswith("rgbd_bonn_")):
        n = end - start
        for src, dst in (("rgb", f"rgb_{n}"), ("depth", f"depth_{n}")):
            files = sorted((seq / src).glob("*.png"))[start:end]
            out = _fresh_dir(seq / dst)
            for f in files:
                shutil.copy2(f, out / f.name)
        gt = np.loadtxt(seq / "groundtruth.txt")[start:end]
        np.savetxt(seq / f"groundtruth_{n}.txt", gt)
        done.append(seq.name)
        log.info("bonn %s: %d frames", seq.name, len(gt))
    if not done:
        raise Monst3rInputError(f"no rgbd_bonn_* folder in {base}: download with `bash data/download_bonn.sh`")
    return done


# ------------------------------------------------------------------------------------------------ TUM


def _read_stamped(path: Path) -> list[tuple[float, list[str]]]:
    """TUM list file -> ``[(timestamp, all text fields)]`` (comments and blank lines skipped)."""
    rows = []
    for line in path.read_text().splitlines():
        fields = line.replace(",", " ").split()
        if not fields or fields[0].startswith("#"):
            continue
        rows.append((float(fields[0]), fields))
    return rows


def associate(first: Sequence[float], second: Sequence[float], offset: float = 0.0, max_difference: float = 0.02
              ) -> list[tuple[int, int]]:
    """TUM association: candidate pairs with ``|a - (b + offset)| < max_difference``, taken greedily by increasing
    difference with every stamp used at most once; returns index pairs sorted by the first stamp."""
    a = np.asarray(first, dtype=np.float64)
    b = np.asarray(second, dtype=np.float64) + offset
    order = np.argsort(b)
    b_sorted = b[order]
    candidates = []
    for i, t in enumerate(a):
        lo = np.searchsorted(b_sorted, t - max_difference, side="left")
        hi = np.searchsorted(b_sorted, t + max_difference, side="right")
        for k in range(lo, hi):
            diff = abs(t - b_sorted[k])
            if diff < max_difference:
                candidates.append((diff, i, int(order[k])))
    candidates.sort()
    used_a, used_b, matches = set(), set(), []
    for _, i, j in candidates:
        if i not in used_a and j not in used_b:
            used_a.add(i)
            used_b.add(j)
            matches.append((i, j))
    return sorted(matches, key=lambda m: (a[m[0]], m[1]))


def prepare_tum(root: PathLike = "data/tum", step: int = 3, count: int = 90, max_difference: float = 0.02
                ) -> list[str]:
    """Build ``rgb_90/`` and ``groundtruth_90.txt`` in every TUM sequence folder; returns the sequences."""
    base = _require_dir(Path(root), "the TUM RGB-D dynamic sequences", "bash data/download_tum_dynamics.sh")
    done = []
    for seq in sorted(p for p in base.iterdir() if p.is_dir() and (p / "rgb.txt").is_file()):
        rgb = _read_stamped(seq / "rgb.txt")
        gt = _read_stamped(seq / "groundtruth.txt")
        matches = associate([t for t, _ in rgb], [t for t, _ in gt], 0.0, max_difference)[::step][:count]
        out = _fresh_dir(seq / f"rgb_{count}")
        lines = []
        for i, j in matches:
            src = seq / rgb[i][1][1]
            shutil.copy2(src, out / src.name)
            lines.append(" ".join(gt[j][1][:8]))
        (seq / f"groundtruth_{count}.txt").write_text("".join(line + "\n" for line in lines))
        done.append(seq.name)
        log.info("tum %s: %d of %d associated frames kept", seq.name, len(matches), len(rgb))
    if not done:
        raise Monst3rInputError(f"no TUM sequence (folder with rgb.txt) in {base}: download with "
                                "`bash data/download_tum_dynamics.sh`")
    return done


# ------------------------------------------------------------------------------------------------ ScanNet


def prepare_scannet(root: PathLike = "data/scannetv2", step: int = 3, end: int = 270) -> list[str]:
    """Build ``color_90/``, ``depth_90/`` and ``pose_90.txt`` in every exported scene folder; returns the scenes."""
    base = _require_dir(Path(root), "the exported ScanNet scenes", "bash data/download_scannetv2.sh")
    done = []
    n = len(range(0, end, step))
    for scene in sorted(p for p in base.iterdir() if p.is_dir() and (p / "color").is_dir()):
        colors = sorted((scene / "color").glob("*.jpg"), key=_numeric_key)[:end:step]
        depths = sorted((scene / "depth").glob("*.png"), key=_numeric_key)[:end:step]
        poses = sorted((scene / "pose").glob("*.txt"), key=_numeric_key)[:end:step]
        out_c, out_d = _fresh_dir(scene / f"color_{n}"), _fresh_dir(scene / f"depth_{n}")
        for k, f in enumerate(colors):
            shutil.copy2(f, out_c / f"frame_{k:04d}.jpg")
        for k, f in enumerate(depths):
            shutil.copy2(f, out_d / f"frame_{k:04d}.png")
        mats = np.stack([np.loadtxt(f).reshape(16) for f in poses]) if poses else np.zeros((0, 16))
        np.savetxt(scene / f"pose_{n}.txt", mats)
        done.append(scene.name)
        log.info("scannet %s: %d frames", scene.name, len(colors))
    if not done:
        raise Monst3rInputError(f"no exported scene (folder with color/) in {base}: run `bash "
                                "data/download_scannetv2.sh` (it exports the .sens files)")
    return done


# ------------------------------------------------------------------------------------------------ KITTI


def prepare_kitti(root: PathLike = "data/kitti", count: int = 110) -> list[str]:
    """Gather the first ``count`` GT depth maps and raw frames of every validation drive; returns the drives."""
    base = Path(root)
    _require_dir(base / "val", "the KITTI depth annotations (val/)", "bash data/download_kitti.sh")
    sel = base / "depth_selection" / "val_selection_cropped"
    done = []
    for gt_dir in sorted(base.glob("val/*/proj_depth/groundtruth/image_02")):
        drive = gt_dir.parents[2].name  # e.g. 2011_09_26_drive_0002_sync
        date = drive[:10]
        raw_dir = base / date / drive / "image_02" / "data"
        if not raw_dir.is_dir():
            log.warning("kitti %s: raw frames %s missing (download the raw drive); skipped", drive, raw_dir)
            continue
        files = sorted(gt_dir.glob("*.png"))[:count]
        out_gt = _fresh_dir(sel / "groundtruth_depth_gathered" / f"{drive}_02")
        out_img = _fresh_dir(sel / "image_gathered" / f"{drive}_02")
        for f in files:
            shutil.copy2(f, out_gt / f.name)
            shutil.copy2(raw_dir / f.name, out_img / f.name)
        done.append(f"{drive}_02")
        log.info("kitti %s: %d frames", drive, len(files))
    if not done:
        raise Monst3rInputError(f"no KITTI drive with both GT depth and raw frames under {base}: run "
                                "`bash data/download_kitti.sh`")
    return done


# ------------------------------------------------------------------------------------------------ NYU-v2


def prepare_nyuv2(root: PathLike = "data/nyu-v2", out: Optional[PathLike] = None) -> int:
    """Convert every ``*.h5`` under ``root`` into ``<out>/{nyu_images,nyu_depths,nyu_depth_imgs}/`` (default
    ``out = <root>/val``); returns the number of images. Also accepts the download folder ``data/nyu_v2``."""
    import cv2
    import h5py

    base = Path(root)
    if not base.is_dir() and Path(str(root).replace("nyu-v2", "nyu_v2")).is_dir():
        base = Path(str(root).replace("nyu-v2", "nyu_v2"))
    _require_dir(base, "NYU-v2 (validation .h5 files)", "bash data/download_nyuv2.sh")
    files = sorted(base.rglob("*.h5"))
    if not files:
        raise Monst3rInputError(f"no .h5 file under {base}: run `bash data/download_nyuv2.sh`")
    dest = Path(out) if out is not None else Path(root) / "val"
    dirs = {k: dest / k for k in ("nyu_images", "nyu_depths", "nyu_depth_imgs")}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    for f in files:
        with h5py.File(f, "r") as h5:
            depth = np.asarray(h5["depth"], dtype=np.float32)
            rgb = np.transpose(np.asarray(h5["rgb"]), (1, 2, 0)).astype(np.uint8)
        name = f.stem
        cv2.imwrite(str(dirs["nyu_images"] / f"{name}.png"), rgb[..., ::-1])
        np.save(dirs["nyu_depths"] / f"{name}.npy", depth)
        norm = depth / depth.max() if depth.max() > 0 else depth
        cv2.imwrite(str(dirs["nyu_depth_imgs"] / f"{name}.png"), (norm * 255).astype(np.uint8))
    log.info("nyu-v2: %d images -> %s", len(files), dest)
    return len(files)


# ------------------------------------------------------------------------------------------------ Sintel labels


def read_flo(path: PathLike) -> np.ndarray:
    """Middlebury ``.flo`` (float32 tag 202021.25, int32 width, height, then interleaved u, v) -> ``[H, W, 2]``."""
    with open(path, "rb") as f:
        tag = np.fromfile(f, dtype="<f4", count=1)
        if tag.size != 1 or tag[0] != np.float32(202021.25):
            raise Monst3rInputError(f"{path} is not a .flo optical-flow file")
        w, h = (int(v) for v in np.fromfile(f, dtype="<i4", count=2))
        data = np.fromfile(f, dtype="<f4", count=2 * w * h)
    return data.reshape(h, w, 2)


def rigid_flow(depth: np.ndarray, K1: np.ndarray, w2c1: np.ndarray, K2: np.ndarray, w2c2: np.ndarray
               ) -> np.ndarray:
    """Flow ``[H, W, 2]`` of frame 1's pixels into frame 2 if the scene were static (depth = camera-1 z;
    ``w2c`` are 3x4 or 4x4 world-to-camera matrices, ``K`` 3x3)."""
    h, w = depth.shape
    u, v = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
    pix = np.stack([u, v, np.ones_like(u)], -1).reshape(-1, 3)
    cam1 = (pix @ np.linalg.inv(K1).T) * depth.reshape(-1, 1).astype(np.float64)
    T1, T2 = np.eye(4), np.eye(4)
    T1[:3] = np.asarray(w2c1)[:3]
    T2[:3] = np.asarray(w2c2)[:3]
    rel = T2 @ np.linalg.inv(T1)
    cam2 = cam1 @ rel[:3, :3].T + rel[:3, 3]
    proj = cam2 @ np.asarray(K2).T
    with np.errstate(divide="ignore", invalid="ignore"):
        uv2 = proj[:, :2] / proj[:, 2:3]
    return (uv2 - pix[:, :2]).reshape(h, w, 2)


def sintel_dynamic_labels(root: PathLike = "data/sintel/training", threshold: float = 13.75,
                          save_dir: str = "dynamic_label_perfect", seqs: Optional[Sequence[str]] = None) -> int:
    """Write ``<root>/<save_dir>/<seq>/frame_%04d.png`` (0/255) for every frame but the last; returns the count.

    Reads ``flow/<seq>/frame_%04d.flo``, ``depth/<seq>/*.dpt`` and ``camdata_left/<seq>/*.cam``.
    """
    import cv2

    from monst3r.eval.depth_io import read_dpt
    from monst3r.eval.trajectory import read_sintel_cam

    base = Path(root)
    for sub in ("flow", "depth", "camdata_left"):
        _require_dir(base / sub, f"Sintel {sub}/", "bash data/download_sintel.sh")
    n = 0
    for seq in sorted(seqs or [p.name for p in (base / "flow").iterdir() if p.is_dir()]):
        flows = sorted((base / "flow" / seq).glob("*.flo"))
        depths = sorted((base / "depth" / seq).glob("*.dpt"))
        cams = sorted((base / "camdata_left" / seq).glob("*.cam"))
        out = base / save_dir / seq
        out.mkdir(parents=True, exist_ok=True)
        for k, flo in enumerate(flows):
            if k + 1 >= len(cams):
                break
            K1, w2c1 = read_sintel_cam(cams[k])
            K2, w2c2 = read_sintel_cam(cams[k + 1])
            error = np.linalg.norm(read_flo(flo) - rigid_flow(read_dpt(depths[k]), K1, w2c1, K2, w2c2), axis=-1)
            label = np.nan_to_num(error, nan=np.inf) > threshold
            cv2.imwrite(str(out / f"{Path(depths[k]).stem}.png"), label.astype(np.uint8) * 255)
            n += 1
        log.info("sintel %s: %d dynamic labels", seq, len(flows))
    return n


def prepare_main(doc: str, argv: Optional[Sequence[str]], options: Sequence[tuple[str, dict]],
                 run: Callable[[Any], Any], report: Callable[[Any], str], *, errors: tuple = (Monst3rInputError,),
                 log_info: bool = True) -> int:
    """The ``main`` of a ``data/prepare_eval_<x>.py`` script; returns the exit status.

    doc: the script's docstring (its first line describes the command); options: ``(flag, add_argument keywords)``
    of the command; run: ``callable(parsed args) -> outcome``; report: ``callable(outcome) -> line`` printed on
    success. One of ``errors`` is one ``error: ...`` line on stderr and exit status 2; ``log_info``: print the
    functions' progress (INFO log lines).
    """
    from monst3r.utils.cli_errors import OneLineArgumentParser, error_exit

    parser = OneLineArgumentParser(description=doc.splitlines()[0])
    for flag, kw in options:
        parser.add_argument(flag, **kw)
    args = parser.parse_args(argv)
    if log_info:
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        outcome = run(args)
    except errors as exc:
        return error_exit(exc)
    print(report(outcome))
    return 0
