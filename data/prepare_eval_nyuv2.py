#!/usr/bin/env python3
"""NYU-v2: convert the validation .h5 files into nyu_images/*.png and nyu_depths/*.npy.

Usage (from anywhere; paths default to the repository's data/ folder):

    python data/prepare_eval_nyuv2.py [--root data/nyu-v2]
"""
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from monst3r.eval.prepare import prepare_nyuv2, prepare_main  # noqa: E402


def main(argv=None) -> int:
    return prepare_main(__doc__, argv, [("--root", dict(default=str(REPO / "data/nyu-v2"),
                                                help="folder holding the .h5 files (data/nyu_v2 is accepted too)"))],
                        lambda args: prepare_nyuv2(args.root),
                        lambda done: f"converted {done} NYU-v2 images")


if __name__ == "__main__":
    sys.exit(main())
