"""Camera-trajectory text files in the two quaternion layouts this project meets.

Both layouts have one line per camera with 8 numbers, a timestamp, the camera centre and the unit quaternion of
the camera-to-world rotation (OpenCV camera axes); they differ only in where the quaternion's scalar part goes:

==============  ==========================  =================================================================
layout          line                        who uses it
==============  ==========================  =================================================================
``"pred_traj"`` ``t x y z qw qx qy qz``     the original MonST3R's ``pred_traj.txt`` (w FIRST); its evaluation
                                            and visualizer read this, so our ``pred_traj.txt`` keeps it
``"tum"``       ``t tx ty tz qx qy qz qw``  the standard TUM RGB-D format (w LAST): evo (``evo_traj tum``,
                                            ``evo_ape tum``), ORB-SLAM, the TUM/Bonn ground truth, our
                                            ``pred_traj_tum.txt`` and the synthetic scenes' ``gt_traj.txt``
==============  ==========================  =================================================================

A file of one layout parses without complaint in the other and gives wrong orientations, so nothing here guesses:
every reader and writer takes the layout explicitly (:func:`read_trajectory`, :func:`write_trajectory`).
Lines starting with ``#`` are comments in both.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
from scipy.spatial.transform import Rotation

from monst3r.errors import Monst3rInputError

PathLike = Union[str, os.PathLike]

TRAJ_LAYOUTS = {
    "pred_traj": "t x y z qw qx qy qz (the original MonST3R's pred_traj.txt, quaternion w first)",
    "tum": "t tx ty tz qx qy qz qw (standard TUM, quaternion w last)",
}

__all__ = ["TRAJ_LAYOUTS", "c2w_to_rows", "rows_to_c2w", "format_trajectory", "write_trajectory",
           "read_trajectory"]


def _check_layout(layout: str) -> str:
    if layout not in TRAJ_LAYOUTS:
        raise ValueError(f"unknown trajectory layout {layout!r}: use one of {', '.join(TRAJ_LAYOUTS)}")
    return layout


def c2w_to_rows(c2w: np.ndarray, canonical: bool = False) -> np.ndarray:
    """Camera-to-world ``[N, 4, 4]`` (or ``[4, 4]``) -> ``[N, 7]`` float64 ``x y z qw qx qy qz``.

    The quaternion is scipy's ``Rotation.from_matrix(R).as_quat()`` reordered w-first; with ``canonical`` its
    sign is flipped so that ``qw >= 0`` (q and -q are the same rotation)."""
    c2w = np.asarray(c2w.detach().cpu() if hasattr(c2w, "detach") else c2w, dtype=np.float64)
    if c2w.ndim == 2:
        c2w = c2w[None]
    xyzw = Rotation.from_matrix(c2w[:, :3, :3]).as_quat()
    if canonical:
        xyzw = xyzw * np.where(xyzw[:, 3:4] < 0, -1.0, 1.0)
    return np.concatenate([c2w[:, :3, 3], xyzw[:, 3:4], xyzw[:, :3]], axis=1)


def rows_to_c2w(rows: np.ndarray) -> np.ndarray:
    """``[N, 7]`` ``x y z qw qx qy qz`` -> ``[N, 4, 4]`` float64 camera-to-world (quaternions are normalised)."""
    rows = np.asarray(rows, dtype=np.float64).reshape(-1, 7)
    out = np.tile(np.eye(4), (len(rows), 1, 1))
    out[:, :3, :3] = Rotation.from_quat(rows[:, [4, 5, 6, 3]]).as_matrix()
    out[:, :3, 3] = rows[:, :3]
    return out


def format_trajectory(c2w: np.ndarray, layout: str, timestamps: Optional[Sequence[float]] = None) -> str:
    """Text of a trajectory file in ``layout`` from camera-to-world ``[N, 4, 4]``.

    Numbers are Python's shortest round-trip ``repr`` of float64 (no precision lost). ``"pred_traj"`` is
    byte-identical to the original's writer (quaternion sign as scipy returns it, no header); ``"tum"`` has
    ``qw >= 0`` and a ``#`` header line naming the columns (evo and the TUM tools skip it)."""
    layout = _check_layout(layout)
    rows = c2w_to_rows(c2w, canonical=layout == "tum")
    ts = np.arange(len(rows), dtype=np.float64) if timestamps is None else \
        np.asarray(timestamps, dtype=np.float64).reshape(-1)
    if len(ts) != len(rows):
        raise ValueError(f"{len(ts)} timestamps for {len(rows)} poses")
    if layout == "tum":
        rows = rows[:, [0, 1, 2, 4, 5, 6, 3]]
    head = "# timestamp tx ty tz qx qy qz qw\n" if layout == "tum" else ""
    return head + "".join(" ".join(repr(float(v)) for v in (t, *r)) + "\n" for t, r in zip(ts, rows))


def write_trajectory(path: PathLike, c2w: np.ndarray, layout: str,
                     timestamps: Optional[Sequence[float]] = None) -> None:
    """Write ``c2w [N, 4, 4]`` to ``path`` in ``layout`` (``"pred_traj"`` or ``"tum"``, required)."""
    Path(path).write_text(format_trajectory(c2w, layout, timestamps))


def read_trajectory(path: PathLike, layout: str) -> tuple[np.ndarray, np.ndarray]:
    """Read a trajectory file of the given ``layout`` (required: never guessed).

    Returns (camera-to-world ``[N, 4, 4]`` float64, timestamps ``[N]`` float64). Raises
    :class:`~monst3r.errors.Monst3rInputError` for anything that is not such a file: text that is not numbers,
    lines without 8 numbers, non-finite values, or a zero quaternion."""
    layout = _check_layout(layout)
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            lines = [ln.split() for ln in f if ln.strip() and not ln.lstrip().startswith("#")]
    except (OSError, UnicodeDecodeError) as err:
        raise Monst3rInputError(f"cannot read trajectory file {path}: {err}") from None
    if not lines:
        raise Monst3rInputError(f"{path} holds no poses (expected lines '{TRAJ_LAYOUTS[layout]}')")
    bad = next((k for k, ln in enumerate(lines) if len(ln) != 8), None)
    if bad is not None:
        raise Monst3rInputError(f"{path}: pose {bad} has {len(lines[bad])} numbers, expected 8 "
                                f"({TRAJ_LAYOUTS[layout]})")
    try:
        data = np.array(lines, dtype=np.float64)
    except ValueError:
        raise Monst3rInputError(f"{path}: not a trajectory file (expected numbers: {TRAJ_LAYOUTS[layout]})") \
            from None
    if not np.isfinite(data).all():
        k = int(np.nonzero(~np.isfinite(data).all(axis=1))[0][0])
        raise Monst3rInputError(f"{path}: pose {k} has non-finite numbers")
    rows = data[:, 1:] if layout == "pred_traj" else data[:, [1, 2, 3, 7, 4, 5, 6]]
    norms = np.linalg.norm(rows[:, 3:], axis=1)
    if (norms < 1e-8).any():
        k = int(np.nonzero(norms < 1e-8)[0][0])
        raise Monst3rInputError(f"{path}: pose {k} has a zero quaternion")
    return rows_to_c2w(rows), data[:, 0]
