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


def to_view(img: PIL.Image.Image, idx: int, instance: str, dyn: Optional[np.ndarray]) -> Dict:
    """The view dict of one loaded (resized, cropped) RGB image: ``img [1, 3, H, W]`` in [-1, 1], ``true_shape``
    ``[[H, W]]``, ``idx``, ``instance`` (its name), ``mask [1, H, W]`` (non-black pixels) and ``dynamic_mask``
    ``[1, H, W]`` bool (``dyn`` ``[H, W]`` or all False)."""
    arr = np.array(img, dtype=np.uint8)
    H, W = arr.shape[:2]
    t = torch.from_numpy(arr).permute(2, 0, 1).float().div_(255.0)
    mask = (t.sum(0) > 0.01)[None]
    t = t.sub_(0.5).div_(0.5)[None]
    dyn_t = torch.from_numpy(dyn)[None] if dyn is not None else torch.zeros((1, H, W), dtype=torch.bool)
    return dict(img=t, true_shape=np.int32([[H, W]]), idx=idx, instance=instance, mask=mask, dynamic_mask=dyn_t)


def _to_8bit(im: PIL.Image.Image) -> PIL.Image.Image:
    """16/32-bit integer and float single-channel images -> 'L' with their values scaled, not clipped.

    DIFFERENCE from the original: PIL's ``convert('RGB')`` of a 16-bit grayscale PNG (mode ``I;16``/``I``) clips
    every value above 255, so a normal 16-bit frame became almost pure white. We map 0..65535 to 0..255
    (``round(v / 257)``) first (16-bit RGB(A) PNGs: see :func:`_png16_rgb`).
    """
    if im.mode.startswith("I"):
        arr = np.asarray(im).astype(np.float64)
        scale = 257.0 if arr.max(initial=0) <= 65535 else arr.max() / 255.0  # 32-bit values: use the full range
        return PIL.Image.fromarray(np.clip(np.round(arr / scale), 0, 255).astype(np.uint8), "L")
    if im.mode == "F":
        arr = np.nan_to_num(np.asarray(im, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        top = 1.0 if arr.max(initial=0) <= 1.0 else 65535.0 if arr.max() <= 65535 else arr.max()
        return PIL.Image.fromarray(np.clip(np.round(arr / top * 255.0), 0, 255).astype(np.uint8), "L")
    return im


def _png16_rgb(path: str, im: PIL.Image.Image) -> PIL.Image.Image:
    """A 16-bit-per-channel RGB(A) PNG rounded to 8 bits (``round(v / 257)``).

    PIL keeps only the high byte of each 16-bit sample (truncation, up to 1/255 darker than rounding); we decode
    with OpenCV to round, so a 16-bit PNG and its 8-bit export give the same view. Falls back to PIL's pixels.
    """
    import cv2

    arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if arr is None or arr.dtype != np.uint16 or arr.ndim != 3 or arr.shape[2] not in (3, 4):
        return im
    rgb = cv2.cvtColor(arr[..., :3], cv2.COLOR_BGR2RGB)
    out = PIL.Image.fromarray(np.round(rgb.astype(np.float64) / 257.0).astype(np.uint8), "RGB")
    if "exif" in im.info:
        out.info["exif"] = im.info["exif"]
    return out


def _open_image(path: str, mode: Optional[str] = "RGB") -> PIL.Image.Image:
    """Open, apply the EXIF orientation and convert to ``mode`` ('RGB' frames; None: keep the mode).

    Palette, grayscale, RGBA (alpha dropped, as the original does), CMYK and 16-bit frames load as 8-bit RGB.
    Images over PIL's decompression-bomb limit are refused with a one-line :class:`Monst3rInputError`.
    """
    try:
        with PIL.Image.open(path) as im:
            deep_rgb = im.format == "PNG" and im.mode in ("RGB", "RGBA") and any(
                str(getattr(t, "args", t[-1] if isinstance(t, tuple) else "")).endswith(";16B") for t in im.tile)
            im.load()
            if deep_rgb:
                im = _png16_rgb(path, im)
            try:
                im2 = ImageOps.exif_transpose(im)
            except Exception as exc:  # noqa: BLE001 - malformed EXIF: keep the pixels as stored
                log.warning("%s: unreadable EXIF orientation (%s); using the image as stored", path, exc)
                im2 = im
            return _to_8bit(im2).convert(mode) if mode is not None else _to_8bit(im2).copy()
    except PIL.Image.DecompressionBombError as exc:
        limit = 2 * (PIL.Image.MAX_IMAGE_PIXELS or 0)
        raise Monst3rInputError(
            f"image {path} is too large to load safely ({str(exc).split(' exceeds')[0].lower()}, more than Pillow's "
            f"decompression-bomb limit of {limit} pixels = 2 x PIL.Image.MAX_IMAGE_PIXELS); downscale it first, e.g. "
            "`ffmpeg -i in.png -vf scale=1920:-1 out.png` (MonST3R works at 512 px anyway)") from None
    except (OSError, PIL.UnidentifiedImageError, SyntaxError, ValueError, EOFError, MemoryError) as exc:
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


class _MaskReport:
    """What happened to the dynamic masks of one ``load_images`` call (summarised as one warning/error)."""

    def __init__(self, root: Optional[str]):
        self.root = root
        self.frames: List[str] = []
        self.missing: List[str] = []
        self.ignored_full: List[str] = []

    def finish(self) -> None:
        if self.root is None or not self.frames:
            return
        if len(self.missing) == len(self.frames):
            present = sorted(os.listdir(self.root))
            found = (f"it holds {', '.join(present[:3])}{' ...' if len(present) > 3 else ''}" if present
                     else "it is empty")
            raise Monst3rInputError(
                f"dynamic mask folder {self.root} has no mask for any of the {len(self.frames)} frames (expected "
                f"e.g. {os.path.join(self.root, os.path.basename(self.frames[0]))}; {found}): each mask must have "
                "the file name of its frame")
        if self.missing:
            names = ", ".join(os.path.basename(m) for m in self.missing[:5])
            log.warning("dynamic masks missing in %s for %d of %d frames (%s%s): those frames get empty masks",
                        self.root, len(self.missing), len(self.frames), names, " ..." if len(self.missing) > 5 else "")
        if self.ignored_full:
            names = ", ".join(os.path.basename(m) for m in self.ignored_full[:5])
            log.warning("%d dynamic mask(s) cover 80%% or more of their frame and are ignored (the original's "
                        "rule; they become empty): %s%s", len(self.ignored_full), names,
                        " ..." if len(self.ignored_full) > 5 else "")


def _load_dynamic_mask(mask_path: Optional[str], size: int, square_ok: bool,
                       frame_size: Optional[tuple] = None, report: Optional[_MaskReport] = None
                       ) -> Optional[np.ndarray]:
    """The bool ``[H, W]`` dynamic mask at ``mask_path`` cropped like its frame, or None when there is none.

    ``frame_size``: the frame's (W, H) before cropping; a mask of another size is an error (the original cropped
    it anyway and produced a mask misaligned with, or of another shape than, the frame). DIFFERENCES from the
    original: a two-level mask whose foreground value is below 255 (0/1, 0/128, a palette index) is read as
    binary instead of becoming all-False under the ``> 0.99 * 255`` threshold; palette masks use their indices.
    """
    if mask_path is None or not os.path.exists(mask_path):
        if report is not None and mask_path is not None:
            report.missing.append(mask_path)
        return None
    src = _open_image(mask_path, None)
    if frame_size is not None and src.size != tuple(frame_size):
        raise Monst3rInputError(f"dynamic mask {mask_path} is {src.size[0]}x{src.size[1]} but its frame is "
                                f"{frame_size[0]}x{frame_size[1]}: masks must have their frame's size")
    # palette masks (e.g. DAVIS annotations): the object indices, not the luminance of their colours
    vals = np.asarray(src) if src.mode == "P" else np.asarray(src.convert("L"))
    raw = PIL.Image.fromarray(vals.astype(np.uint8), "L")
    levels = np.unique(vals)
    if len(levels) == 2 and levels[0] == 0 and levels[1] < 255:
        # two-level masks stored with another foreground value (0/1, 0/128, palette index 1): binary, not
        # "all below the 0.99 threshold" (which made the original silently use an all-False mask)
        raw = PIL.Image.fromarray(np.where(vals > 0, 255, 0).astype(np.uint8), "L")
    m = crop_img(raw, size, square_ok)
    m = np.asarray(m, dtype=np.float32) / 255.0 > 0.99
    if m.mean() >= 0.8:
        if report is not None:
            report.ignored_full.append(mask_path)
        return np.zeros_like(m)
    return m


def _video_frames(path: str, fps: float, num_frames: Optional[int]):
    """Yield ``(frame_index, PIL.Image)`` sampled at ``fps`` (0 = every frame), at most ``num_frames``.

    A file that cannot be opened or decoded is an error (the original skipped it with a message); a video that
    yields no frame at all is an error; one that ends before its header's frame count (truncated file) gives a
    warning with both counts.
    """
    import cv2

    cap = cv2.VideoCapture(path)
    try:
        if not cap.isOpened():
            raise Monst3rInputError(f"cannot open video {path} (unsupported codec, not a video file, or a truncated "
                                    "download: re-encode it, e.g. ffmpeg -i in.mov out.mp4, or fetch it again)")
        video_fps = cap.get(cv2.CAP_PROP_FPS)
        total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        if not video_fps or video_fps != video_fps or video_fps < 0 or total <= 0:
            raise Monst3rInputError(f"cannot decode video {path} (no frame rate / frame count; re-encode it, e.g. "
                                    "with ffmpeg -i in.mov out.mp4)")
        interval = max(1, round(video_fps / fps)) if fps > 0 else 1
        indices = list(range(0, total, interval))
        if num_frames is not None:
            indices = indices[:num_frames]
        got = 0
        for k in indices:
            cap.set(cv2.CAP_PROP_POS_FRAMES, k)
            ok, frame = cap.read()
            if not ok or frame is None:
                if got == 0:
                    raise Monst3rInputError(f"video {path} yielded no frame (its header announces {total}; the "
                                            "file is truncated or damaged: re-encode or re-download it)")
                log.warning("video %s: its header announces %d frames (%d to sample) but decoding stopped at frame "
                            "%d; using the %d frames read (truncated file?)", path, total, len(indices), k, got)
                break
            got += 1
            yield k, PIL.Image.fromarray(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    finally:
        cap.release()


def _list_inputs(folder_or_list) -> List[str]:
    if isinstance(folder_or_list, (str, os.PathLike)):
        p = str(folder_or_list)
        if os.path.isdir(p):
            names = os.listdir(p)
            entries = [os.path.join(p, f) for f in names if f.lower().endswith(IMAGE_EXTS + VIDEO_EXTS)]
            if not entries:
                raise Monst3rInputError(f"no images or videos in {p} (supported: {', '.join(IMAGE_EXTS + VIDEO_EXTS)})")
            # the original skipped other files silently: a folder of .tif/.webp frames mixed with .png lost frames
            others = sorted(f for f in names if not f.lower().endswith(IMAGE_EXTS + VIDEO_EXTS)
                            and not f.startswith(".") and os.path.isfile(os.path.join(p, f)))
            if others:
                log.warning("%s: %d file(s) of unsupported type skipped (%s%s); supported: %s", p, len(others),
                            ", ".join(others[:5]), " ..." if len(others) > 5 else "",
                            ", ".join(IMAGE_EXTS + VIDEO_EXTS))
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
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not 16 <= size <= 8192:
        raise Monst3rInputError(f"image size {size!r} is not usable: give an integer between 16 and 8192 "
                                "(512 or 224 for the released models)")
    if not isinstance(fps, (int, float)) or isinstance(fps, bool) or not fps >= 0 or fps == float("inf"):
        raise Monst3rInputError(f"fps {fps!r} is not usable: give a positive frame rate, or 0 for every frame")
    if num_frames is not None and (isinstance(num_frames, bool) or not isinstance(num_frames, (int, np.integer))
                                   or num_frames < 1):
        raise Monst3rInputError(f"num_frames {num_frames!r} is not usable: give a positive number of frames")
    if dynamic_mask_root is not None and not os.path.isdir(dynamic_mask_root):
        raise Monst3rInputError(f"dynamic mask folder {dynamic_mask_root} does not exist or is not a folder")
    paths = sorted(_list_inputs(folder_or_list), key=lambda x: os.path.basename(x))
    out = imgs if imgs is not None else []
    start = len(out)
    report = _MaskReport(dynamic_mask_root)
    for path in paths:
        ext = os.path.splitext(path)[1].lower()
        if not os.path.exists(path):
            raise Monst3rInputError(f"input not found: {path}")
        if ext in VIDEO_EXTS:
            if dynamic_mask_root is not None:
                raise Monst3rInputError(f"dynamic masks ({dynamic_mask_root}) need a folder of frames, but {path} is "
                                        "a video: extract its frames first (e.g. ffmpeg -i in.mp4 frames/%05d.jpg) "
                                        "or drop the masks")
            for k, frame in _video_frames(path, fps, num_frames):
                img = _crop_checked(frame, size, square_ok, crop, f"{path} frame {k}")
                out.append(to_view(img, len(out), f"{path}_frame_{k}", None))
            continue
        if ext not in IMAGE_EXTS:
            raise Monst3rInputError(f"unsupported file type: {path} (supported: {', '.join(IMAGE_EXTS + VIDEO_EXTS)})")
        raw = _open_image(path)
        img = _crop_checked(raw, size, square_ok, crop, path)
        mask_path = _mask_path(path, dynamic_mask_root, faithful_mask_path)
        if dynamic_mask_root is not None:
            report.frames.append(path)
        dyn = _load_dynamic_mask(mask_path, size, square_ok, frame_size=raw.size if dynamic_mask_root else None,
                                 report=report if dynamic_mask_root else None)
        if dyn is not None and dyn.shape != img.size[::-1]:
            if dynamic_mask_root is not None or not crop:
                # crop=False resizes the frame, while masks are always cropped (as in the original)
                raise Monst3rInputError(f"dynamic mask {mask_path} gives a {dyn.shape[1]}x{dyn.shape[0]} mask but "
                                        f"frame {path} a {img.size[0]}x{img.size[1]} view; masks need their "
                                        "frame's size (and crop=True)")
            log.warning("dynamic mask %s of %s has shape %s, image %s: ignored", mask_path, path, dyn.shape,
                        img.size[::-1])
            dyn = None
        out.append(to_view(img, len(out), path, dyn))
        if verbose:
            log.info(" - adding %s with resolution %s", path, img.size)
    report.finish()
    if len(out) == start:
        raise Monst3rInputError(f"no frames could be read from {folder_or_list}")
    if verbose:
        log.info(" (Found %d images)", len(out) - start)
    return out


def _crop_checked(img: PIL.Image.Image, size: int, square_ok: bool, crop: bool, what: str) -> PIL.Image.Image:
    """:func:`crop_img`, refusing frames so thin that a side would fall below one 16-pixel patch."""
    out = crop_img(img, size, square_ok, crop) if min(img.size) > 0 else img
    if min(out.size) < 16:
        raise Monst3rInputError(f"{what} is {img.size[0]}x{img.size[1]}: at image size {size} it becomes "
                                f"{out.size[0]}x{out.size[1]}, thinner than one 16-pixel patch; crop it to a less "
                                "extreme aspect ratio")
    return out
