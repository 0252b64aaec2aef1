"""Recognising files that are obviously not what the user meant to give (checkpoints in particular)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Union


def sniff_file_kind(path: Union[str, Path]) -> Optional[str]:
    """What a file that cannot be a PyTorch checkpoint looks like (``'an empty file'``, ``'a PNG image'``, ...);
    None when it may be one (a zip archive or a pickle stream)."""
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError as exc:
        return f"unreadable ({exc.strerror or exc})"
    if not head:
        return "an empty file"
    if head.startswith(b"PK\x03\x04") or head.startswith(b"\x80") or head[:1] in (b"(", b"}", b"]"):
        return None  # torch zip format / legacy pickle stream: let torch.load decide
    kinds = [(b"\x89PNG", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"), (b"GIF8", "a GIF image"),
             (b"%PDF", "a PDF document"), (b"\x1f\x8b", "a gzip archive"), (b"BM", "a BMP image"),
             (b"PK", "a zip archive"), (b"\x93NUMPY", "a NumPy .npy array")]
    for magic, what in kinds:
        if head.startswith(magic):
            return what
    if head[4:8] == b"ftyp":
        return "a video / MP4 file"
    if head.lstrip()[:1] in (b"{", b"["):
        return "a JSON / text file"
    try:
        head.decode("utf-8")
        return "a text file"
    except UnicodeDecodeError:
        return "not a PyTorch checkpoint"
