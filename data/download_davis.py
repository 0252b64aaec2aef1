#!/usr/bin/env python3
"""DAVIS-2017 train+val (480p) -> data/davis/DAVIS/, plus one MP4 per sequence (data/davis_videos/<seq>.mp4,
30 fps) and binary object masks data/davis/DAVIS/masked_images/480p/<seq>/<frame>.jpg (object = 255, 3 channels)
that ``launch.py --mode=eval_pose --eval_dataset=davis --use_gt_mask`` and ``demo.py --use_gt_davis_masks`` read.

Usage (from anywhere; MONST3R_DATA_ROOT overrides the repository's data/ folder):

    python data/download_davis.py [--dry-run] [--skip-videos]
"""
from __future__ import annotations

import os
import shutil
import sys
import urllib.request
import zipfile
from pathlib import Path

import numpy as np

URL = "https://data.vision.ee.ethz.ch/csergi/share/davis/DAVIS-2017-trainval-480p.zip"
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from monst3r.utils.cli_errors import OneLineArgumentParser, error_exit  # noqa: E402


def download(url: str, dest: Path) -> None:
    """``url`` -> ``dest`` through a temporary name (skipped when ``dest`` exists)."""
    if dest.is_file() and dest.stat().st_size > 0:
        print(f"skip (exists): {dest}")
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    print(f"download: {url} -> {dest}")
    with urllib.request.urlopen(url) as resp, open(tmp, "wb") as f:  # noqa: S310 (fixed https URL)
        shutil.copyfileobj(resp, f, length=1 << 20)
    os.replace(tmp, dest)


def object_mask(annotation: np.ndarray) -> np.ndarray:
    """DAVIS annotation -> ``uint8 [H, W, 3]`` 0/255 mask of every object.

    Palette PNGs (object ids) mark objects with ids > 0; colour annotations with any channel above 2 (what the
    original kept: ``annotation > 2`` -> 255).
    """
    if annotation.ndim == 2:
        mask = annotation > 0
    else:
        mask = (annotation[..., :3] > 2).any(axis=-1)
    return np.repeat((mask.astype(np.uint8) * 255)[..., None], 3, axis=-1)


def make_masks(davis: Path) -> int:
    """Write ``masked_images/480p/<seq>/<frame>.jpg`` from ``Annotations/480p``; returns the number of masks."""
    import cv2
    from PIL import Image

    n = 0
    for seq in sorted(p for p in (davis / "Annotations" / "480p").iterdir() if p.is_dir()):
        out = davis / "masked_images" / "480p" / seq.name
        out.mkdir(parents=True, exist_ok=True)
        for ann in sorted(seq.glob("*.png")):
            with Image.open(ann) as im:
                arr = np.array(im)
            cv2.imwrite(str(out / f"{ann.stem}.jpg"), object_mask(arr))
            n += 1
    return n


def make_videos(davis: Path, out: Path, fps: float = 30.0) -> int:
    """One ``mp4v`` MP4 per sequence of ``JPEGImages/480p``; returns the number of videos."""
    import cv2

    out.mkdir(parents=True, exist_ok=True)
    n = 0
    for seq in sorted(p for p in (davis / "JPEGImages" / "480p").iterdir() if p.is_dir()):
        frames = sorted(seq.glob("*.jpg"))
        if not frames:
            continue
        first = cv2.imread(str(frames[0]))
        h, w = first.shape[:2]
        writer = cv2.VideoWriter(str(out / f"{seq.name}.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
        try:
            for f in frames:
                writer.write(cv2.imread(str(f)))
        finally:
            writer.release()
        n += 1
    return n


def main(argv=None) -> int:
    parser = OneLineArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="print what would be done")
    parser.add_argument("--skip-videos", action="store_true", help="do not write data/davis_videos/*.mp4")
    args = parser.parse_args(argv)
    data = Path(os.environ.get("MONST3R_DATA_ROOT", REPO / "data"))
    zip_path = data / "davis" / "DAVIS-2017-trainval-480p.zip"
    davis = data / "davis" / "DAVIS"
    if args.dry_run:
        print(f"download: {URL} -> {zip_path}\nextract -> {davis}\nmasks -> {davis / 'masked_images/480p'}\n"
              f"videos -> {data / 'davis_videos'}")
        return 0
    try:
        if not (davis / "JPEGImages" / "480p").is_dir():
            download(URL, zip_path)
            print(f"extract: {zip_path}")
            with zipfile.ZipFile(zip_path) as z:
                z.extractall(data / "davis")
            zip_path.unlink()
        print(f"masks: {make_masks(davis)} written")
        if not args.skip_videos:
            print(f"videos: {make_videos(davis, data / 'davis_videos')} written")
    except (OSError, zipfile.BadZipFile) as exc:
        return error_exit(exc, 1)
    print(f"done: {davis}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
