"""Camera-trajectory file formats used by pose evaluation.

All in-memory poses are camera-to-world 4x4 matrices (OpenCV camera convention). Trajectories handed to the
metrics are "TUM rows": ``[N, 7]`` float64 arrays ``x y z qw qx qy qz`` (position of the camera centre and the
scalar-FIRST unit quaternion of the camera-to-world rotation) plus ``[N]`` timestamps.

Formats (evaluation spec §4):

* ``pred_traj.txt`` (what the optimizer writes, :func:`save_pred_traj` / :func:`load_pred_traj`): one line per
  frame ``"<t> <x> <y> <z> <qw> <qx> <qy> <qz>"``, numbers written with Python ``str()`` of float64.
  WARNING: the quaternion is w-first, unlike standard TUM files (the result folder also holds the same poses in
  standard TUM as ``pred_traj_tum.txt``; both layouts are described in :mod:`monst3r.trajectory_io`).
* standard TUM (:func:`write_tum` / :func:`read_tum`): ``"t tx ty tz qx qy qz qw"`` (w-last), ``#`` comments.
* ``replica`` (ScanNet ``pose_90.txt``, :func:`read_replica`): 12 or 16 numbers per line, a row-major 3x4 / 4x4
  camera-to-world matrix; timestamps ``0..N-1``.
* ``sintel`` (:func:`read_sintel_cam_folder`): a folder of ``*.cam`` files (little-endian float32 tag
  202021.25, 9 float64 intrinsics, 12 float64 world-to-camera 3x4 extrinsics); timestamp = frame number parsed
  from the file name; positions are mean-centred (as the original loader does; irrelevant after Sim(3)
  alignment).

:func:`load_traj` dispatches on the format name exactly like the original evaluation (``tum``/``tartanair``,
``replica``, ``sintel``; plus ``pred_traj`` for a w-first file such as another run's ``pred_traj.txt``) and
applies ``[skip::stride]`` then ``[:num_frames]``. The layout is always named by the caller, never guessed from
the numbers.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Optional, Union

import numpy as np

from monst3r.trajectory_io import c2w_to_rows, rows_to_c2w

PathLike = Union[str, os.PathLike]

SINTEL_CAM_TAG = 202021.25

__all__ = [
    "c2w_to_tum_rows",
    "tum_rows_to_c2w",
    "save_pred_traj",
    "load_pred_traj",
    "write_tum",
    "read_tum",
    "read_replica",
    "write_sintel_cam",
    "read_sintel_cam",
    "read_sintel_cam_folder",
    "load_traj",
]


def c2w_to_tum_rows(c2w: np.ndarray) -> np.ndarray:
    """Camera-to-world matrices -> TUM rows.

    Args:
        c2w: ``[N, 4, 4]`` (or ``[4, 4]``) camera-to-world matrices (numpy or torch).
    Returns:
        ``[N, 7]`` float64 rows ``x y z qw qx qy qz``. The quaternion comes from
        ``scipy.Rotation.from_matrix(R).as_quat()`` reordered to w-first; its sign is NOT canonicalised
        (same as the original ``c2w_to_tumpose``).
    """
    return c2w_to_rows(c2w, canonical=False)


def tum_rows_to_c2w(rows: np.ndarray) -> np.ndarray:
    """TUM rows ``[N, 7]`` (``x y z qw qx qy qz``) -> ``[N, 4, 4]`` float64 camera-to-world matrices."""
    return rows_to_c2w(rows)


def save_pred_traj(path: PathLike, rows: np.ndarray, timestamps: Optional[np.ndarray] = None) -> None:
    """Write ``pred_traj.txt`` in the original's layout.

    Args:
        path: output file.
        rows: ``[N, 7]`` TUM rows (``x y z qw qx qy qz``) or ``[N, 4, 4]`` camera-to-world matrices.
        timestamps: ``[N]`` timestamps; default ``0.0 .. N-1``.
    """
    rows = np.asarray(rows, dtype=np.float64)
    if rows.ndim == 3:
        rows = c2w_to_tum_rows(rows)
    if timestamps is None:
        timestamps = np.arange(len(rows), dtype=np.float64)
    timestamps = np.asarray(timestamps, dtype=np.float64).reshape(-1)
    if len(timestamps) != len(rows):
        raise ValueError(f"{len(timestamps)} timestamps for {len(rows)} poses")
    lines = [" ".join(str(float(v)) for v in (t, *r)) for t, r in zip(timestamps, rows)]
    Path(path).write_text("".join(line + "\n" for line in lines))


def load_pred_traj(path: PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read a ``pred_traj.txt`` -> (rows ``[N, 7]`` ``x y z qw qx qy qz``, timestamps ``[N]``)."""
    data = np.loadtxt(path, dtype=np.float64, ndmin=2)
    if data.shape[1] != 8:
        raise ValueError(f"{path}: expected 8 columns (t x y z qw qx qy qz), got {data.shape[1]}")
    return data[:, 1:], data[:, 0]


def write_tum(path: PathLike, c2w: np.ndarray, timestamps: Optional[np.ndarray] = None,
              header: bool = True) -> None:
    """Write a standard TUM trajectory (``t tx ty tz qx qy qz qw``, w-last) from ``[N, 4, 4]`` c2w matrices.

    Quaternions are canonicalised to ``qw >= 0``; timestamps default to ``0..N-1``.
    """
    rows = c2w_to_tum_rows(c2w)
    rows[:, 3:] *= np.where(rows[:, 3:4] < 0, -1.0, 1.0)
    if timestamps is None:
        timestamps = np.arange(len(rows), dtype=np.float64)
    timestamps = np.asarray(timestamps, dtype=np.float64).reshape(-1)
    table = np.concatenate([timestamps[:, None], rows[:, :3], rows[:, 4:], rows[:, 3:4]], axis=1)
    np.savetxt(path, table, fmt=["%.6f"] + ["%.9f"] * 7,
               header="timestamp tx ty tz qx qy qz qw" if header else "", comments="# ")


def read_tum(path: PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read a standard TUM file with evo's reader -> (rows ``[N, 7]`` ``x y z qw qx qy qz``, timestamps ``[N]``)."""
    from evo.tools import file_interface

    traj = file_interface.read_tum_trajectory_file(str(path))
    rows = np.concatenate([traj.positions_xyz, traj.orientations_quat_wxyz], axis=1)
    return rows, np.asarray(traj.timestamps, dtype=np.float64)


def read_replica(path: PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read 12/16 numbers per line (row-major 3x4/4x4 c2w) -> (rows ``[N, 7]``, timestamps ``0..N-1``)."""
    data = np.loadtxt(path, dtype=np.float64, ndmin=2)
    if data.shape[1] not in (12, 16):
        raise ValueError(f"{path}: expected 12 or 16 numbers per line, got {data.shape[1]}")
    c2w = np.tile(np.eye(4), (len(data), 1, 1))
    c2w[:, :3, :] = data[:, :12].reshape(-1, 3, 4)
    return c2w_to_tum_rows(c2w), np.arange(len(data), dtype=np.float64)


def write_sintel_cam(path: PathLike, intrinsics: np.ndarray, w2c: np.ndarray) -> None:
    """Write one Sintel ``.cam`` file (float32 tag, 3x3 intrinsics and 3x4 world-to-camera, float64 LE)."""
    with open(path, "wb") as f:
        np.array([SINTEL_CAM_TAG], dtype="<f4").tofile(f)
        np.asarray(intrinsics, dtype="<f8").reshape(3, 3).tofile(f)
        np.asarray(w2c, dtype="<f8")[:3, :4].tofile(f)


def read_sintel_cam(path: PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read one Sintel ``.cam`` file -> (intrinsics ``[3, 3]``, world-to-camera ``[3, 4]``)."""
    with open(path, "rb") as f:
        tag = np.fromfile(f, dtype="<f4", count=1)
        if tag.size != 1 or tag[0] != np.float32(SINTEL_CAM_TAG):
            raise ValueError(f"{path}: not a Sintel .cam file (bad tag)")
        intrinsics = np.fromfile(f, dtype="<f8", count=9).reshape(3, 3)
        w2c = np.fromfile(f, dtype="<f8", count=12).reshape(3, 4)
    return intrinsics, w2c


def read_sintel_cam_folder(folder: PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read every ``*.cam`` in a folder (sorted by name).

    Returns:
        rows ``[N, 7]`` (c2w as ``x y z qw qx qy qz``, positions mean-centred) and timestamps ``[N, 1]``
        (the frame number in each file name, e.g. ``frame_0007.cam`` -> 7.0).
    """
    files = sorted(p for p in Path(folder).iterdir() if p.suffix == ".cam")
    if not files:
        raise FileNotFoundError(f"no .cam files in {folder}")
    c2w = np.tile(np.eye(4), (len(files), 1, 1))
    stamps = []
    for k, name in enumerate(files):
        w2c = np.eye(4)
        w2c[:3, :] = read_sintel_cam(name)[1]
        c2w[k] = np.linalg.inv(w2c)
        digits = re.findall(r"\d+", name.stem)
        stamps.append(float(digits[-1]) if digits else float(k))
    rows = c2w_to_tum_rows(c2w)
    rows[:, :3] -= rows[:, :3].mean(axis=0)
    return rows, np.asarray(stamps, dtype=np.float64)[:, None]


def load_traj(path: PathLike, traj_format: str = "sintel", stride: int = 1, skip: int = 0,
              num_frames: Optional[int] = None) -> tuple[np.ndarray, np.ndarray]:
    """Load a GT trajectory like the original ``load_traj``.

    Args:
        path: a file (``tum``/``tartanair``/``replica``/``pred_traj``) or a folder of ``.cam`` files (``sintel``).
        traj_format: ``'tum'`` (w-last), ``'tartanair'``, ``'replica'``, ``'sintel'`` or ``'pred_traj'``
            (w-first, the original's ``pred_traj.txt``).
        stride, skip, num_frames: applied as ``[skip::stride][:num_frames]``.
    Returns:
        rows ``[N, 7]`` (``x y z qw qx qy qz``) and timestamps (``[N]``; ``[N, 1]`` for Sintel).
    """
    if traj_format in ("tum", "tartanair"):
        rows, stamps = read_tum(path)
    elif traj_format == "replica":
        rows, stamps = read_replica(path)
    elif traj_format == "sintel":
        rows, stamps = read_sintel_cam_folder(path)
    elif traj_format == "pred_traj":
        rows, stamps = load_pred_traj(path)
    else:
        raise ValueError(f"unknown trajectory format {traj_format!r} (use tum, tartanair, replica, sintel or "
                         "pred_traj)")
    rows, stamps = rows[skip::stride], stamps[skip::stride]
    if num_frames is not None:
        rows, stamps = rows[:num_frames], stamps[:num_frames]
    return rows, stamps
