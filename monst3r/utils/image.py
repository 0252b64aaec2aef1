"""Frames -> view dicts: ``load_images`` (spec model.md 6).

A view dict holds ``img [1,3,H,W]`` float32 in [-1,1], ``true_shape`` int32 ``[[H, W]]`` (numpy),
``idx`` (position in the returned list), ``instance`` (path string; video frames ``f"{path}_frame_{k}"``),
``mask [1,H,W]`` bool (pixel not near-black) and ``dynamic_mask [1,H,W]`` bool.

Resizing and cropping follow the original exactly (``crop_img``): long side to ``size`` (LANCZOS when shrinking,
BICUBIC otherwise), then a centred crop to multiples of 16 (``size == 224``: a centred square).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import PIL.Image
import torch
from PIL import ImageOps

from monst3r.errors import Monst3rInputError

log = logging.getLogger(__name__)

try:  # optional HEIC support, as in the original
    from pillow_heif import register_heif_opener  # type: ignore

    register_heif_opener()
    HEIF_SUPPORT = True
except ImportError:
    HEIF_SUPPORT = False

IMAGE_EXTS = (".jpg", ".jpeg", ".png") + ((".heic", ".heif") if HEIF_SUPPORT else ())
VIDEO_EXTS = (".mp4", ".avi", ".mov")


def _resize(img: PIL.Image.Image, long_edge_size: int) -> PIL.Image.Image:
    S = max(img.size)
    interp = PIL.Image.LANCZOS if S > long_edge_size else PIL.Image.BICUBIC
    new_size = tuple(int(round(x * long_edge_size / S)) for x in img.size)
    return img.resize(new_size, interp)


def crop_img(img: PIL.Image.Image, size: int, square_ok: bool = False, crop: bool = True) -> PIL.Image.Image:
    """Resize and centre-crop ``img`` the way the original does (see module docstring).

    With ``crop=False`` the image is resized to the crop size instead; the original raised TypeError for square
    inputs there (float half-height); we use integer arithmetic, which gives the crop path's sizes.
    """
    W1, H1 = img.size
    if size == 224:
        img = _resize(img, round(size * max(W1 / H1, H1 / W1)))
    else:
        img = _resize(img, size)
    W, H = img.size
    cx, cy = W // 2, H // 2
    if size == 224:
        half = min(cx, cy)
        box = (cx - half, cy - half, cx + half, cy + half)
        return img.crop(box) if crop else img.resize((2 * half, 2 * half), PIL.Image.LANCZOS)
    halfw, halfh = ((2 * cx) // 16) * 8, ((2 * cy) // 16) * 8
    if not square_ok and W == H:
        halfh = 3 * halfw // 4
    if crop:
        return img.crop((cx - halfw, cy - halfh, cx + halfw, cy + halfh))
    return img.resize((2 * halfw, 2 * halfh), PIL.Image.LANCZOS)


def _to_view(img: PIL.Image.Image, idx: int, instance: str, dyn: Optional[np.ndarray]) -> Dict:
    arr = np.array(img, dtype=np.uint8)
    H, W = arr.shape[:2]
    t = torch.from_numpy(arr).permute(2, 0, 1).float().div_(255.0)
    mask = (t.sum(0) > 0.01)[None]
    t = t.sub_(0.5).div_(0.5)[None]
    dyn_t = torch.from_numpy(dyn)[None] if dyn is not None else torch.zeros((1, H, W), dtype=torch.bool)
    return dict(img=t, true_shape=np.int32([[H, W]]), idx=idx, instance=instance, mask=mask, dynamic_mask=dyn_t)


def _open_image(path: str) -> PIL.Image.Image:
    try:
        with PIL.Image.open(path) as im:
            im.load()
            return ImageOps.exif_transpose(im).convert("RGB")
    except (OSError, PIL.UnidentifiedImageError, SyntaxError, ValueError) as exc:
        raise Monst3rInputError(f"cannot read image {path}: {exc} (is the file complete and a valid image?)") from None


def _mask_path(path: str, dynamic_mask_root: Optional[str], faithful_mask_path: bool) -> Optional[str]:
    """Where the dynamic mask of ``path`` lives, or None.

    With a root: ``root/<basename>``. Without: the Sintel layout (``final``/``clean`` -> ``dynamic_label_perfect``).
    BUG FIX (spec model.md 6): the original then used the image itself as its mask when the path held neither
    word; we only read a mask from a path different from the image path. ``faithful_mask_path=True`` restores
    the original behaviour (for comparisons only).
    """
    if dynamic_mask_root is not None:
        return os.path.join(dynamic_mask_root, os.path.basename(path))
    mp = path.replace("final", "dynamic_label_perfect").replace("clean", "dynamic_label_perfect")
    if mp == path and not faithful_mask_path:
        return None
    return mp


def _load_dynamic_mask(mask_path: Optional[str], size: int, square_ok: bool) -> Optional[np.ndarray]:
    if mask_path is None or not os.path.exists(mask_path):
        return None
    m = crop_img(_open_image(mask_path).convert("L"), size, square_ok)
    m = np.asarray(m, dtype=np.float32) / 255.0 > 0.99
    return m if m.mean() < 0.8 else np.zeros_like(m)


def _video_frames(path: str, fps: float, num_frames: Optional[int]):
    """Yield ``(frame_index, PIL.Image)`` sampled at ``fps`` (0 = every frame), at most ``num_frames``."""
    import cv2

    cap = cv2.VideoCapture(path)
    try:
        if not cap.isOpened():
            raise Monst3rInputError(f"cannot open video {path} (unsupported codec or not a video file)")
        video_fps = cap.get(cv2.CAP_PROP_FPS)
        total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        if not video_fps or total <= 0:
            raise Monst3rInputError(f"cannot decode video {path} (no frame rate / frame count; re-encode it, e.g. "
                                    "with ffmpeg -i in.mov out.mp4)")
        interval = max(1, round(video_fps / fps)) if fps > 0 else 1
        indices = list(range(0, total, interval))
        if num_frames is not None:
            indices = indices[:num_frames]
        for k in indices:
            cap.set(cv2.CAP_PROP_POS_FRAMES, k)
            ok, frame = cap.read()
            if not ok:
                break
            yield k, PIL.Image.fromarray(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    finally:
        cap.release()


def _list_inputs(folder_or_list) -> List[str]:
    if isinstance(folder_or_list, (str, os.PathLike)):
        p = str(folder_or_list)
        if os.path.isdir(p):
            entries = [os.path.join(p, f) for f in os.listdir(p)]
            entries = [e for e in entries if e.lower().endswith(IMAGE_EXTS + VIDEO_EXTS)]
            if not entries:
                raise Monst3rInputError(f"no images or videos in {p} (supported: {', '.join(IMAGE_EXTS + VIDEO_EXTS)})")
            return entries
        if os.path.isfile(p):
            return [p]
        raise Monst3rInputError(f"input not found: {p} (give a folder of frames, a video file or a list of images)")
    if isinstance(folder_or_list, (list, tuple)):
        if not folder_or_list:
            raise Monst3rInputError("empty list of images")
        return [str(x) for x in folder_or_list]
    raise Monst3rInputError(f"bad input type {type(folder_or_list).__name__}: give a folder, a file or a list")


def load_images(folder_or_list: Union[str, os.PathLike, Sequence[str]], size: int, square_ok: bool = False,
                verbose: bool = True, dynamic_mask_root: Optional[str] = None, crop: bool = True, fps: float = 0,
                num_frames: Optional[int] = 110, imgs: Optional[List[Dict]] = None,
                faithful_mask_path: bool = False) -> List[Dict]:
    """Load a folder, a file (image or video) or a list of paths into view dicts (module docstring).

    Entries are sorted by basename (lists too, as the original does). ``imgs``: a list to extend in place (idx
    continues from its length). Videos are sampled with ``fps`` (0 = all frames) and truncated to ``num_frames``.
    Raises :class:`Monst3rInputError` for a missing path, an empty folder, an unsupported or unreadable file.
    """
    paths = sorted(_list_inputs(folder_or_list), key=lambda x: os.path.basename(x))
    out = imgs if imgs is not None else []
    start = len(out)
    for path in paths:
        ext = os.path.splitext(path)[1].lower()
        if not os.path.exists(path):
            raise Monst3rInputError(f"input not found: {path}")
        if ext in VIDEO_EXTS:
            for k, frame in _video_frames(path, fps, num_frames):
                img = crop_img(frame, size, square_ok, crop)
                out.append(_to_view(img, len(out), f"{path}_frame_{k}", None))
            continue
        if ext not in IMAGE_EXTS:
            raise Monst3rInputError(f"unsupported file type: {path} (supported: {', '.join(IMAGE_EXTS + VIDEO_EXTS)})")
        img = crop_img(_open_image(path), size, square_ok, crop)
        dyn = _load_dynamic_mask(_mask_path(path, dynamic_mask_root, faithful_mask_path), size, square_ok)
        if dyn is not None and dyn.shape != img.size[::-1]:
            log.warning("dynamic mask of %s has shape %s, image %s: ignored", path, dyn.shape, img.size[::-1])
            dyn = None
        out.append(_to_view(img, len(out), path, dyn))
        if verbose:
            log.info(" - adding %s with resolution %s", path, img.size)
    if len(out) == start:
        raise Monst3rInputError(f"no frames could be read from {folder_or_list}")
    if verbose:
        log.info(" (Found %d images)", len(out) - start)
    return out
