#!/usr/bin/env python3
"""KITTI: gather the first 110 GT depth maps and raw frames of the 13 validation drives.

Usage (from anywhere; paths default to the repository's data/ folder):

    python data/prepare_eval_kitti.py [--root data/kitti]
"""
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from monst3r.eval.prepare import prepare_kitti, prepare_main  # noqa: E402


def main(argv=None) -> int:
    return prepare_main(__doc__, argv, [("--root", dict(default=str(REPO / "data/kitti"),
                                                          help="KITTI folder (val/ and raw drives)"))],
                        lambda args: prepare_kitti(args.root),
                        lambda done: f"prepared {len(done)} KITTI drives: {', '.join(done)}")


if __name__ == "__main__":
    sys.exit(main())
