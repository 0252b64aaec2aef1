#!/usr/bin/env python3
"""Bonn RGB-D dynamic: build rgb_110/, depth_110/ and groundtruth_110.txt (frames 30..139) per sequence.

Usage (from anywhere; paths default to the repository's data/ folder):

    python data/prepare_eval_bonn.py [--root data/bonn/rgbd_bonn_dataset]
"""
import argparse
import logging
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from monst3r.errors import Monst3rInputError  # noqa: E402
from monst3r.utils.cli_errors import OneLineArgumentParser  # noqa: E402
from monst3r.eval.prepare import prepare_bonn  # noqa: E402


def main(argv=None) -> int:
    parser = OneLineArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=str(REPO / "data/bonn/rgbd_bonn_dataset"), help="extracted dataset")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        done = prepare_bonn(args.root)
    except Monst3rInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"prepared {len(done)} Bonn sequences: {', '.join(done)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
