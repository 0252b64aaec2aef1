#!/usr/bin/env python3
"""Sintel: dynamic-object labels from GT flow vs. the flow of camera motion (dynamic_label_perfect/).

Usage (from anywhere; paths default to the repository's data/ folder):

    python data/prepare_eval_sintel_dynamics.py [--root data/sintel/training] [--threshold 0.1] [--save_dir dynamic_label_perfect]
"""
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from monst3r.eval.prepare import sintel_dynamic_labels, prepare_main  # noqa: E402


def main(argv=None) -> int:
    return prepare_main(__doc__, argv, [
        ("--root", dict(default=str(REPO / "data/sintel/training"), help="Sintel training folder")),
        ("--threshold", dict(type=float, default=13.75, help="flow error (pixels) above which a pixel is dynamic; "
                                                              "the documented command uses 0.1")),
        ("--save_dir", dict(default="dynamic_label_perfect", help="output folder name under --root"))],
                        lambda args: sintel_dynamic_labels(args.root, args.threshold, args.save_dir),
                        lambda done: f"wrote {done} label maps")


if __name__ == "__main__":
    sys.exit(main())
