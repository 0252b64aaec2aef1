#!/usr/bin/env python3
"""KITTI: gather the first 110 GT depth maps and raw frames of the 13 validation drives.

Usage (from anywhere; paths default to the repository's data/ folder):

    python data/prepare_eval_kitti.py [--root data/kitti]
"""
import argparse
import logging
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from monst3r.errors import Monst3rInputError  # noqa: E402
from monst3r.utils.cli_errors import OneLineArgumentParser  # noqa: E402
from monst3r.eval.prepare import prepare_kitti  # noqa: E402


def main(argv=None) -> int:
    parser = OneLineArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=str(REPO / "data/kitti"), help="KITTI folder (val/ and raw drives)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        done = prepare_kitti(args.root)
    except Monst3rInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"prepared {len(done)} KITTI drives: {', '.join(done)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
