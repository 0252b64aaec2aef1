#!/usr/bin/env python3
"""ScanNet: build color_90/, depth_90/ and pose_90.txt (frames 0, 3, ..., 267) per exported scene.

Usage (from anywhere; paths default to the repository's data/ folder):

    python data/prepare_eval_scannet.py [--root data/scannetv2]
"""
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from monst3r.eval.prepare import prepare_scannet, prepare_main  # noqa: E402


def main(argv=None) -> int:
    return prepare_main(__doc__, argv, [("--root", dict(default=str(REPO / "data/scannetv2"),
                                                          help="folder of the exported scenes"))],
                        lambda args: prepare_scannet(args.root),
                        lambda done: f"prepared {len(done)} ScanNet scenes")


if __name__ == "__main__":
    sys.exit(main())
