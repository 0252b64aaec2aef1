#!/usr/bin/env python3
"""ScanNet: export one .sens recording into color/, depth/, pose/ and intrinsic/ (used by download_scannetv2.sh).

Usage (from anywhere):

    python data/prepare_eval_scannet_sens.py --filename data/scannetv2/scene0707_00.sens \
        --output_path data/scannetv2/scene0707_00 [--max_frames 270]
"""
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from monst3r.errors import Monst3rInputError  # noqa: E402
from monst3r.eval.prepare import prepare_main  # noqa: E402
from monst3r.eval.scannet_sens import export_sens  # noqa: E402


def main(argv=None) -> int:
    return prepare_main(__doc__, argv, [
        ("--filename", dict(required=True, help=".sens file")),
        ("--output_path", dict(required=True, help="scene folder to write")),
        ("--max_frames", dict(type=int, default=None,
                              help="export only the first N frames (the evaluation uses frames 0..269)"))],
        lambda args: (args, export_sens(args.filename, args.output_path, max_frames=args.max_frames)),
        lambda done: f"exported {done[1]} frames of {done[0].filename} to {done[0].output_path}",
        errors=(Monst3rInputError, OSError), log_info=False)


if __name__ == "__main__":
    sys.exit(main())
