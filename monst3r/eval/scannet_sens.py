"""Reader of ScanNet ``.sens`` recordings (the export step of ``data/download_scannetv2.sh``).

File layout (little-endian; ScanNet SensorData version 4)::

    uint32 version (4) | uint64 n | n bytes sensor name
    4 x float32[16]    intrinsic_color, extrinsic_color, intrinsic_depth, extrinsic_depth (row-major 4x4)
    int32 color_compression (-1 unknown, 0 raw, 1 png, 2 jpeg) | int32 depth_compression (0 raw, 1 zlib, 2 occi)
    uint32 color_width, color_height, depth_width, depth_height | float32 depth_shift (1000: millimetres)
    uint64 num_frames, then per frame:
        float32[16] camera_to_world | uint64 timestamp_color, timestamp_depth | uint64 color_bytes, depth_bytes
        color_bytes of colour data | depth_bytes of depth data (uint16 [depth_height, depth_width] once decoded)

:func:`export_sens` writes ``<out>/color/<i>.jpg`` (the stored JPEG bytes, full colour resolution),
``<out>/depth/<i>.png`` (16-bit, millimetres), ``<out>/pose/<i>.txt`` (4x4 camera-to-world) and
``<out>/intrinsic/{intrinsic,extrinsic}_{color,depth}.txt``: the layout :func:`monst3r.eval.prepare.prepare_scannet`
reads.
"""
from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path
from typing import BinaryIO, Optional, Union

import numpy as np

from monst3r.errors import Monst3rInputError

PathLike = Union[str, os.PathLike]

__all__ = ["export_sens", "write_sens"]


def _read(f: BinaryIO, fmt: str):
    size = struct.calcsize(fmt)
    data = f.read(size)
    if len(data) != size:
        raise Monst3rInputError(f"{getattr(f, 'name', '.sens')} is truncated (download it again)")
    return struct.unpack(fmt, data)


def _matrix(f: BinaryIO) -> np.ndarray:
    return np.asarray(_read(f, "<16f"), dtype=np.float32).reshape(4, 4)


def export_sens(path: PathLike, out: PathLike, max_frames: Optional[int] = None, frame_skip: int = 1) -> int:
    """Export a ``.sens`` file (see module docstring); returns the number of frames written."""
    import cv2

    out = Path(out)
    for sub in ("color", "depth", "pose", "intrinsic"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    with open(path, "rb") as f:
        (version,) = _read(f, "<I")
        if version != 4:
            raise Monst3rInputError(f"{path}: unsupported .sens version {version} (expected 4)")
        (name_len,) = _read(f, "<Q")
        f.read(name_len)
        mats = {k: _matrix(f) for k in ("intrinsic_color", "extrinsic_color", "intrinsic_depth", "extrinsic_depth")}
        color_comp, depth_comp = _read(f, "<ii")
        _cw, _ch, dw, dh = _read(f, "<4I")
        (_shift,) = _read(f, "<f")
        (num_frames,) = _read(f, "<Q")
        if color_comp != 2:
            raise Monst3rInputError(f"{path}: colour compression {color_comp} is not JPEG; not supported")
        for k, m in mats.items():
            np.savetxt(out / "intrinsic" / f"{k}.txt", m, fmt="%f")
        written = 0
        for i in range(num_frames):
            if max_frames is not None and i >= max_frames:
                break
            c2w = _matrix(f)
            _read(f, "<QQ")
            color_bytes, depth_bytes = _read(f, "<QQ")
            color, depth = f.read(color_bytes), f.read(depth_bytes)
            if i % frame_skip:
                continue
            (out / "color" / f"{i}.jpg").write_bytes(color)
            raw = zlib.decompress(depth) if depth_comp == 1 else depth
            if depth_comp not in (0, 1):
                raise Monst3rInputError(f"{path}: depth compression {depth_comp} is not supported")
            cv2.imwrite(str(out / "depth" / f"{i}.png"), np.frombuffer(raw, dtype="<u2").reshape(dh, dw))
            np.savetxt(out / "pose" / f"{i}.txt", c2w, fmt="%f")
            written += 1
    return written


def write_sens(path: PathLike, colors_jpeg: list[bytes], depths: list[np.ndarray], poses: list[np.ndarray],
               color_size: tuple[int, int], intrinsic_color: Optional[np.ndarray] = None) -> None:
    """Write a minimal version-4 ``.sens`` file (JPEG colour, zlib depth); for tests and tooling.

    ``color_size`` is ``(width, height)``; depths are ``uint16 [h, w]`` (millimetres); poses 4x4 c2w.
    """
    eye = np.eye(4, dtype=np.float32)
    k_color = eye if intrinsic_color is None else np.asarray(intrinsic_color, np.float32)
    dh, dw = depths[0].shape
    with open(path, "wb") as f:
        name = b"synthetic"
        f.write(struct.pack("<IQ", 4, len(name)) + name)
        for m in (k_color, eye, eye, eye):
            f.write(np.asarray(m, "<f4").tobytes())
        f.write(struct.pack("<ii4IfQ", 2, 1, color_size[0], color_size[1], dw, dh, 1000.0, len(colors_jpeg)))
        for k, (c, d, p) in enumerate(zip(colors_jpeg, depths, poses)):
            dz = zlib.compress(np.asarray(d, "<u2").tobytes())
            f.write(np.asarray(p, "<f4").tobytes() + struct.pack("<QQQQ", k, k, len(c), len(dz)) + c + dz)
