#!/usr/bin/env python3
"""TUM RGB-D dynamics: associate frames and GT, keep every 3rd of the first 270 (rgb_90/, groundtruth_90.txt).

Usage (from anywhere; paths default to the repository's data/ folder):

    python data/prepare_eval_tum.py [--root data/tum]
"""
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from monst3r.eval.prepare import prepare_tum, prepare_main  # noqa: E402


def main(argv=None) -> int:
    return prepare_main(__doc__, argv, [("--root", dict(default=str(REPO / "data/tum"),
                                                          help="folder of the extracted sequences"))],
                        lambda args: prepare_tum(args.root),
                        lambda done: f"prepared {len(done)} TUM sequences: {', '.join(done)}")


if __name__ == "__main__":
    sys.exit(main())
