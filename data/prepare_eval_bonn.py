#!/usr/bin/env python3
"""Bonn RGB-D dynamic: build rgb_110/, depth_110/ and groundtruth_110.txt (frames 30..139) per sequence.

Usage (from anywhere; paths default to the repository's data/ folder):

    python data/prepare_eval_bonn.py [--root data/bonn/rgbd_bonn_dataset]
"""
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from monst3r.eval.prepare import prepare_bonn, prepare_main  # noqa: E402


def main(argv=None) -> int:
    return prepare_main(__doc__, argv, [("--root", dict(default=str(REPO / "data/bonn/rgbd_bonn_dataset"),
                                                          help="extracted dataset"))],
                        lambda args: prepare_bonn(args.root),
                        lambda done: f"prepared {len(done)} Bonn sequences: {', '.join(done)}")


if __name__ == "__main__":
    sys.exit(main())
