"""Cropping and rescaling of one view (image, depth map, intrinsics) to a training resolution
(spec training.md 7.3).

Intrinsics are OpenCV-style (pixel centres at integers). Rescaling goes through the COLMAP convention
(``c + 0.5``), so ``f' = s f`` and ``c' = s (c + 0.5) - 0.5``. All roundings are NumPy's (halves to even).
"""
from __future__ import annotations

from typing import Callable, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import PIL.Image

from monst3r.datasets.camera_geometry import colmap_to_opencv_intrinsics, opencv_to_colmap_intrinsics

Box = Tuple[int, int, int, int]


def _to_pil(image) -> PIL.Image.Image:
    if isinstance(image, PIL.Image.Image):
        return image
    return PIL.Image.fromarray(np.asarray(image))


def crop_view(image: PIL.Image.Image, depth: np.ndarray, K: np.ndarray, box: Box,
              extras: Sequence[np.ndarray] = ()) -> Tuple[PIL.Image.Image, np.ndarray, np.ndarray, List[np.ndarray]]:
    """Crop ``box = (l, t, r, b)`` out of the image ``[H,W]``, the depth ``[H,W]`` and each extra map ``[H,W]``;
    the principal point moves by ``(-l, -t)``."""
    l, t, r, b = (int(v) for v in box)
    K = np.array(K, dtype=np.float64, copy=True)
    K[0, 2] -= l
    K[1, 2] -= t
    return image.crop((l, t, r, b)), depth[t:b, l:r], K, [e[t:b, l:r] for e in extras]


def _resize_float_map(m: np.ndarray, size: Tuple[int, int], resample) -> np.ndarray:
    return np.asarray(PIL.Image.fromarray(m.astype(np.float32), mode="F").resize(size, resample=resample))


def rescale_view(image: PIL.Image.Image, depth: np.ndarray, K: np.ndarray, target: Sequence[int],
                 extras: Sequence[np.ndarray] = ()) -> Tuple[PIL.Image.Image, np.ndarray, np.ndarray, List[np.ndarray]]:
    """Scale by ``s = max(target / (W, H)) + 1e-8`` to ``floor((W, H) s)`` (LANCZOS when shrinking, else BICUBIC;
    nearest neighbour for the depth; the image's filter for extra float maps).

    Intrinsics: ``f' = s f``, ``c' = s (c + 0.5) - 0.5 - m / 2`` where ``m = (W, H) s - floor((W, H) s)`` is the
    fraction of a pixel lost by the flooring (the original's ``camera_matrix_of_crop`` with its default centred
    offset; the golden augmented item shows this term, which spec 7.3 step 5 leaves out)."""
    W, H = image.size
    s = float(max(np.asarray(target, dtype=np.float64) / np.array([W, H], dtype=np.float64))) + 1e-8
    out = np.floor(np.array([W, H], dtype=np.float64) * s).astype(int)
    size = (int(out[0]), int(out[1]))
    resample = PIL.Image.LANCZOS if s < 1 else PIL.Image.BICUBIC
    image = image.resize(size, resample=resample)
    depth = cv2.resize(depth, size, fx=s, fy=s, interpolation=cv2.INTER_NEAREST)
    Kc = opencv_to_colmap_intrinsics(K)
    Kc[:2, :] *= s
    # the flooring drops a fraction of a pixel; the original treats it as a centred crop of that margin
    Kc[:2, 2] -= 0.5 * (np.array([W, H], dtype=np.float64) * s - out)
    return image, depth, colmap_to_opencv_intrinsics(Kc), [_resize_float_map(e, size, resample) for e in extras]


def center_crop_box(size: Tuple[int, int], resolution: Tuple[int, int]) -> Box:
    """Box of a ``resolution = (W, H)`` window centred in an image of ``size = (W0, H0)`` (NumPy rounding)."""
    l, t = np.round(0.5 * (np.asarray(size, dtype=np.float64) - np.asarray(resolution, dtype=np.float64))
                    ).astype(np.int32)
    return int(l), int(t), int(l) + int(resolution[0]), int(t) + int(resolution[1])


def crop_resize_view(image, depth: np.ndarray, K: np.ndarray, resolution: Tuple[int, int],
                     rng: np.random.Generator, aug_focal: float = 0.0, aug_crop: int = 0,
                     beta_draw: Optional[Callable[[], float]] = None, info: str = "",
                     extras: Sequence[np.ndarray] = ()
                     ) -> Tuple[PIL.Image.Image, np.ndarray, np.ndarray, List[np.ndarray]]:
    """The original's ``_crop_resize_if_necessary`` (spec 7.3), steps in order:

    1. crop around the principal point (which becomes the centre; margins must exceed 1/5 of the size);
    2. portrait images take the transposed resolution; near-square ones flip it with probability 1/2
       (``rng.integers(2)``) unless the resolution is square;
    3. ``aug_focal``: centred crop keeping ``floor(size * (aug_focal + (1 - aug_focal) * beta(0.5, 0.5)))``
       (``beta_draw()`` supplies the Beta draw; default ``rng.beta(0.5, 0.5)``);
    4. ``aug_crop > 1``: the target grows by ``rng.integers(0, aug_crop)`` pixels in both W and H;
    5. rescale to cover the target; 6. centred crop to exactly ``resolution``.

    ``extras``: float maps ``[H,W]`` cropped and resized exactly like the image (e.g. a dynamic mask).
    Returns ``(PIL image, depth [h,w], K [3,3] float64, extras)``.
    """
    image = _to_pil(image)
    extras = [np.asarray(e, dtype=np.float32) for e in extras]
    W, H = image.size
    cx, cy = (int(v) for v in np.round(np.asarray(K, dtype=np.float64)[:2, 2]))
    mx, my = min(cx, W - cx), min(cy, H - cy)
    if not (mx > W / 5 and my > H / 5):
        raise ValueError(f"principal point ({cx}, {cy}) too far from the centre of the {W}x{H} image {info}")
    image, depth, K, extras = crop_view(image, depth, K, (cx - mx, cy - my, cx + mx, cy + my), extras)

    W, H = image.size
    resolution = tuple(int(v) for v in resolution)
    if H > 1.1 * W:
        resolution = resolution[::-1]
    elif 0.9 < H / W < 1.1 and resolution[0] != resolution[1]:
        if rng.integers(2):
            resolution = resolution[::-1]

    if aug_focal:
        draw = beta_draw() if beta_draw is not None else rng.beta(0.5, 0.5)
        crop_scale = aug_focal + (1.0 - aug_focal) * draw
        cw, ch = int(W * crop_scale), int(H * crop_scale)
        l, t = int((W - cw) / 2), int((H - ch) / 2)
        image, depth, K, extras = crop_view(image, depth, K, (l, t, l + cw, t + ch), extras)

    target = np.array(resolution)
    if aug_crop and aug_crop > 1:
        target = target + rng.integers(0, aug_crop)
    image, depth, K, extras = rescale_view(image, depth, K, target, extras)
    image, depth, K, extras = crop_view(image, depth, K, center_crop_box(image.size, resolution), extras)
    return image, depth, K, extras
