#!/usr/bin/env python3
"""ScanNet: export one .sens recording into color/, depth/, pose/ and intrinsic/ (used by download_scannetv2.sh).

Usage (from anywhere):

    python data/prepare_eval_scannet_sens.py --filename data/scannetv2/scene0707_00.sens \
        --output_path data/scannetv2/scene0707_00 [--max_frames 270]
"""
import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from monst3r.errors import Monst3rInputError  # noqa: E402
from monst3r.utils.cli_errors import OneLineArgumentParser  # noqa: E402
from monst3r.eval.scannet_sens import export_sens  # noqa: E402


def main(argv=None) -> int:
    parser = OneLineArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--filename", required=True, help=".sens file")
    parser.add_argument("--output_path", required=True, help="scene folder to write")
    parser.add_argument("--max_frames", type=int, default=None,
                        help="export only the first N frames (the evaluation uses frames 0..269)")
    args = parser.parse_args(argv)
    try:
        n = export_sens(args.filename, args.output_path, max_frames=args.max_frames)
    except (Monst3rInputError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"exported {n} frames of {args.filename} to {args.output_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
