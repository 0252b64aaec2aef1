"""Depth-map files of the evaluation sets and of the predictions.

* Sintel ``.dpt``: little-endian float32 tag 202021.25, int32 width, int32 height, then ``H*W`` float32 depths
  (row-major). :func:`read_dpt` / :func:`write_dpt`.
* Bonn / TUM 16-bit PNG, depth x 5000; KITTI 16-bit PNG, depth x 256: :func:`read_png_depth` (0 = invalid -> -1,
  float64, as the original notebook; the file must really be 16-bit, i.e. have a maximum above 255).
* NYU-v2 ``.npy`` (metres) and every prediction (``frame_%04d.npy`` / ``<name>depth.npy``): :func:`numpy.load`.

:func:`read_gt_depth` dispatches on the ``depth_gt_kind`` of :mod:`monst3r.eval.metadata`.
"""
from __future__ import annotations

import os
from typing import Union

import numpy as np

from monst3r.errors import Monst3rInputError

PathLike = Union[str, os.PathLike]

DPT_TAG = 202021.25

__all__ = ["read_dpt", "write_dpt", "read_png_depth", "write_png_depth", "read_gt_depth", "PNG_DEPTH_SCALES"]

#: ``depth_gt_kind`` -> PNG scale (depth = value / scale).
PNG_DEPTH_SCALES = {"png5000": 5000.0, "png256": 256.0}


def read_dpt(path: PathLike) -> np.ndarray:
    """Sintel ``.dpt`` -> ``float32 [H, W]`` depth."""
    with open(path, "rb") as f:
        tag = np.fromfile(f, dtype="<f4", count=1)
        if tag.size != 1 or tag[0] != np.float32(DPT_TAG):
            raise Monst3rInputError(f"{path} is not a Sintel .dpt depth file (bad tag); re-download the Sintel "
                                    "depth archive with bash data/download_sintel.sh")
        width, height = (int(v) for v in np.fromfile(f, dtype="<i4", count=2))
        data = np.fromfile(f, dtype="<f4", count=width * height)
    if data.size != width * height:
        raise Monst3rInputError(f"{path} is truncated ({data.size} of {width * height} depths)")
    return data.reshape(height, width).astype(np.float32)


def write_dpt(path: PathLike, depth: np.ndarray) -> None:
    """``[H, W]`` depth -> Sintel ``.dpt`` file."""
    depth = np.asarray(depth, dtype="<f4")
    with open(path, "wb") as f:
        np.array([DPT_TAG], dtype="<f4").tofile(f)
        np.array([depth.shape[1], depth.shape[0]], dtype="<i4").tofile(f)
        depth.tofile(f)


def read_png_depth(path: PathLike, scale: float) -> np.ndarray:
    """16-bit depth PNG -> ``float64 [H, W]`` metres (``value / scale``, 0 -> -1 = invalid)."""
    import cv2

    png = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if png is None:
        raise Monst3rInputError(f"cannot read depth PNG {path}")
    if png.ndim != 2 or png.max() <= 255:
        raise Monst3rInputError(f"{path} is not a 16-bit single-channel depth PNG (max {png.max()}); check the "
                                "GT depth folder (prepare scripts in data/)")
    depth = png.astype(np.float64) / scale
    depth[png == 0] = -1.0
    return depth


def write_png_depth(path: PathLike, depth: np.ndarray, scale: float) -> None:
    """``[H, W]`` metres -> 16-bit PNG of ``round(depth * scale)`` (values <= 0 -> 0 = invalid)."""
    import cv2

    value = np.clip(np.round(np.asarray(depth, np.float64) * scale), 0, 65535).astype(np.uint16)
    cv2.imwrite(str(path), value)


def read_gt_depth(path: PathLike, kind: str) -> np.ndarray:
    """GT depth of one frame by kind: ``dpt`` (Sintel), ``png5000`` (Bonn), ``png256`` (KITTI), ``npy`` (NYU)."""
    if kind == "dpt":
        return read_dpt(path)
    if kind in PNG_DEPTH_SCALES:
        return read_png_depth(path, PNG_DEPTH_SCALES[kind])
    if kind == "npy":
        return np.load(path)
    raise ValueError(f"unknown GT depth kind {kind!r} (dpt, png5000, png256, npy)")
