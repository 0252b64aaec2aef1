#!/usr/bin/env python3
"""TUM RGB-D dynamics: associate frames and GT, keep every 3rd of the first 270 (rgb_90/, groundtruth_90.txt).

Usage (from anywhere; paths default to the repository's data/ folder):

    python data/prepare_eval_tum.py [--root data/tum]
"""
import argparse
import logging
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from monst3r.errors import Monst3rInputError  # noqa: E402
from monst3r.utils.cli_errors import OneLineArgumentParser  # noqa: E402
from monst3r.eval.prepare import prepare_tum  # noqa: E402


def main(argv=None) -> int:
    parser = OneLineArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=str(REPO / "data/tum"), help="folder of the extracted sequences")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        done = prepare_tum(args.root)
    except Monst3rInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"prepared {len(done)} TUM sequences: {', '.join(done)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
