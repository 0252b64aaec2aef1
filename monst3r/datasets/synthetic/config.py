"""Scene parameters of :mod:`monst3r.datasets.synthetic`: :class:`SceneConfig`, size parsing, frame pairs."""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from monst3r.errors import Monst3rInputError

MIN_SIZE = (64, 48)
MAX_SIDE = 512
#: Longest scene the generator writes (a frame takes ~0.1 s; far more frames only means a run that never ends).
MAX_FRAMES = 10_000
FORMAT_VERSION = 1

# --------------------------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class SceneConfig:
    """Scene parameters. Everything else (layout, motion, textures) is drawn from ``seed``.

    Attributes:
        width, height: image size in pixels (64x48 .. 512 per side).
        num_frames: number of frames (>= 1).
        seed: non-negative integer seed.
        static_camera: near-static camera (millimetre / sub-degree smooth jitter) instead of a moving one.
        num_objects: number of moving rigid objects (0..8).
        fov_deg: horizontal field of view; focal length ``f = W / 2 / tan(fov/2)`` (square pixels).
    """

    width: int = 512
    height: int = 288
    num_frames: int = 65
    seed: int = 0
    static_camera: bool = False
    num_objects: int = 3
    fov_deg: float = 60.0

    def validate(self) -> None:
        """Raise :class:`Monst3rInputError` on unusable values."""
        for name in ("width", "height", "num_frames", "seed", "num_objects"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise Monst3rInputError(f"{name} must be an integer, got {value!r}")
        if not (MIN_SIZE[0] <= self.width <= MAX_SIDE and MIN_SIZE[1] <= self.height <= MAX_SIDE):
            raise Monst3rInputError(
                f"image size {self.width}x{self.height} is out of range: use a width in {MIN_SIZE[0]}..{MAX_SIDE} "
                f"and a height in {MIN_SIZE[1]}..{MAX_SIDE} (e.g. 512x288)")
        if not 1 <= self.num_frames <= MAX_FRAMES:
            raise Monst3rInputError(f"the number of frames must be between 1 and {MAX_FRAMES}, got {self.num_frames}")
        if self.seed < 0:
            raise Monst3rInputError(f"the seed must be a non-negative integer, got {self.seed}")
        if not 0 <= self.num_objects <= 8:
            raise Monst3rInputError(f"num_objects must be in 0..8, got {self.num_objects}")
        if not 10.0 <= float(self.fov_deg) <= 120.0:
            raise Monst3rInputError(f"fov_deg must be in 10..120 degrees, got {self.fov_deg}")


def parse_size(text: str) -> tuple[int, int]:
    """``'512x288'`` -> ``(512, 288)`` (width, height); raises :class:`Monst3rInputError` otherwise."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", str(text))
    if not match:
        raise Monst3rInputError(f"unknown size {text!r}: write it as WIDTHxHEIGHT, e.g. 512x288")
    width, height = int(match.group(1)), int(match.group(2))
    SceneConfig(width=width, height=height, num_frames=1).validate()
    return width, height


def window_pairs(num_frames: int, window: int) -> list[tuple[int, int]]:
    """All ordered pairs ``(i, j)`` with ``1 <= |i - j| <= window`` (both directions), sorted."""
    return [(i, j) for i in range(num_frames) for j in range(max(0, i - window), min(num_frames, i + window + 1))
            if i != j]
