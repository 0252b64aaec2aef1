#!/usr/bin/env python3
"""ScanNet: build color_90/, depth_90/ and pose_90.txt (frames 0, 3, ..., 267) per exported scene.

Usage (from anywhere; paths default to the repository's data/ folder):

    python data/prepare_eval_scannet.py [--root data/scannetv2]
"""
import argparse
import logging
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from monst3r.errors import Monst3rInputError  # noqa: E402
from monst3r.utils.cli_errors import OneLineArgumentParser  # noqa: E402
from monst3r.eval.prepare import prepare_scannet  # noqa: E402


def main(argv=None) -> int:
    parser = OneLineArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=str(REPO / "data/scannetv2"), help="folder of the exported scenes")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        done = prepare_scannet(args.root)
    except Monst3rInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"prepared {len(done)} ScanNet scenes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
