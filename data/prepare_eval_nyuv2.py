#!/usr/bin/env python3
"""NYU-v2: convert the validation .h5 files into nyu_images/*.png and nyu_depths/*.npy.

Usage (from anywhere; paths default to the repository's data/ folder):

    python data/prepare_eval_nyuv2.py [--root data/nyu-v2]
"""
import argparse
import logging
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from monst3r.errors import Monst3rInputError  # noqa: E402
from monst3r.utils.cli_errors import OneLineArgumentParser  # noqa: E402
from monst3r.eval.prepare import prepare_nyuv2  # noqa: E402


def main(argv=None) -> int:
    parser = OneLineArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=str(REPO / "data/nyu-v2"), help="folder holding the .h5 files "
                        "(data/nyu_v2 is accepted too)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        done = prepare_nyuv2(args.root)
    except Monst3rInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"converted {done} NYU-v2 images")
    return 0


if __name__ == "__main__":
    sys.exit(main())
