"""The compact MonST3R trained here (``make train-small``, recipe ``recipes/train_small.sh``) and its export.

The compact model is the same :class:`monst3r.model.AsymmetricCroCo3DStereo` as the official one with a small
ViT encoder (128 wide, 6 blocks), two small decoders (128 wide, 4 blocks) and linear heads, trained from scratch
on the procedural scenes of :mod:`monst3r.datasets.synthetic` at 224x224 (``--image_size 224``). It is shipped in
the repository (``checkpoints/monst3r_synthetic_small.pth``, fp16 weights, about 7 MiB) for the offline demo
(``make demo``) and the whole-pipeline regression test; it knows nothing of real videos.

Command line::

    python -m monst3r.model_zoo export build/train_small/checkpoint-final.pth checkpoints/monst3r_synthetic_small.pth
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional, Sequence

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]

#: Constructor string of the compact model (``load_model`` parses it; no eval).
COMPACT_MODEL_STRING = (
    "AsymmetricCroCo3DStereo(pos_embed='RoPE100', patch_embed_cls='PatchEmbedDust3R', img_size=(224, 224), "
    "head_type='linear', output_mode='pts3d', depth_mode=('exp', -inf, inf), conf_mode=('exp', 1, inf), "
    "enc_embed_dim=128, enc_depth=6, enc_num_heads=4, dec_embed_dim=128, dec_depth=4, dec_num_heads=4)")
#: Where the shipped weights live (inside the repository).
COMPACT_WEIGHTS = REPO_ROOT / "checkpoints" / "monst3r_synthetic_small.pth"
#: The working resolution the compact model was trained at (demo ``--image_size``).
COMPACT_IMAGE_SIZE = 224


def export_compact(src, dst, half: bool = True) -> Path:
    """Write ``{"model": state_dict, "args": {"model": <string>}}`` from a training checkpoint ``src``.

    ``half`` stores the weights as float16 (they are cast back to the model's float32 on load). The file is
    written beside ``dst`` and renamed into place, so a failed export leaves no partial file.
    """
    from monst3r.model import load_model

    model = load_model(str(src), device="cpu", for_inference=False)
    sd = {k: (v.half() if half and v.is_floating_point() else v).contiguous() for k, v in model.state_dict().items()}
    model_string = _model_string(src)
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.tmp-{os.getpid()}")
    try:
        torch.save({"model": sd, "args": {"model": model_string}}, tmp)
        os.replace(tmp, dst)
    finally:
        if tmp.exists():
            tmp.unlink()
    return dst


def _model_string(src) -> str:
    import argparse

    with torch.serialization.safe_globals([argparse.Namespace]):
        ckpt = torch.load(src, map_location="cpu", weights_only=True)
    args = ckpt["args"]
    return (vars(args) if isinstance(args, argparse.Namespace) else args)["model"]


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m monst3r.model_zoo export SRC DST``; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) != 3 or argv[0] != "export":
        print("usage: python -m monst3r.model_zoo export SRC.pth DST.pth", file=sys.stderr)
        return 2
    dst = export_compact(argv[1], argv[2])
    print(f"wrote {dst} ({dst.stat().st_size / 2**20:.1f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
