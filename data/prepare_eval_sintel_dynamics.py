#!/usr/bin/env python3
"""Sintel: dynamic-object labels from GT flow vs. the flow of camera motion (dynamic_label_perfect/).

Usage (from anywhere; paths default to the repository's data/ folder):

    python data/prepare_eval_sintel_dynamics.py [--root data/sintel/training] [--threshold 0.1] [--save_dir dynamic_label_perfect]
"""
import argparse
import logging
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from monst3r.errors import Monst3rInputError  # noqa: E402
from monst3r.utils.cli_errors import OneLineArgumentParser  # noqa: E402
from monst3r.eval.prepare import sintel_dynamic_labels  # noqa: E402


def main(argv=None) -> int:
    parser = OneLineArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=str(REPO / "data/sintel/training"), help="Sintel training folder")
    parser.add_argument("--threshold", type=float, default=13.75,
                        help="flow error (pixels) above which a pixel is dynamic; the documented command uses 0.1")
    parser.add_argument("--save_dir", default="dynamic_label_perfect", help="output folder name under --root")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        done = sintel_dynamic_labels(args.root, args.threshold, args.save_dir)
    except Monst3rInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {done} label maps")
    return 0


if __name__ == "__main__":
    sys.exit(main())
