"""The synthetic benchmark: held-out procedural sequences with exact ground truth, and their scores.

Sequences (``--eval_dataset=synthetic``): ``<root>/data/synthetic_eval/scene<seed>/`` for the seeds of
:data:`monst3r.datasets.synthetic.collection.EVAL_SEEDS` (never used in training), 24 frames of 224x224 whose
camera has the intrinsics of the compact model's 224x224 training crops (focal 346.4 px, i.e. a 35.8 degree
field of view), so the demo's ``--image_size 224`` loads them unchanged and predictions and GT depth share one
pixel grid. They are generated on first use (a few seconds; deterministic), or with
``python -m monst3r.eval.synthetic prepare [--root .]``.

Scores (:func:`score_result`): ATE / RPE-trans / RPE-rot of the result's trajectory against ``gt_traj.txt``
(:func:`monst3r.eval.metrics.pose_metrics`, Sim(3)-aligned as in the original), the trivial baseline's ATE (every
camera at the mean GT position: the RMS distance of the GT positions from their mean), and the depth metrics
after one median scale per sequence (:func:`monst3r.eval.metrics.depth_evaluation`, Abs Rel and delta<1.25).

Command line::

    python -m monst3r.eval.synthetic prepare [--root .]
    python -m monst3r.eval.synthetic scene --out DIR [--seed 0] [--frames 24]     (kept when already there)
    python -m monst3r.eval.synthetic score RESULT_FOLDER SCENE_FOLDER [--json OUT.json]
"""
from __future__ import annotations

import json
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from monst3r.errors import Monst3rInputError

#: Image side and frame count of the held-out sequences.
EVAL_SIZE = 224
EVAL_FRAMES = 24
#: The training scenes' focal length (400x225 frames, 60 degree horizontal field of view: 200 / tan 30 deg).
TRAIN_FOCAL = 200.0 / math.tan(math.radians(30.0))
#: Field of view of a 224x224 view with that focal length (degrees).
EVAL_FOV_DEG = math.degrees(2.0 * math.atan(EVAL_SIZE / 2.0 / TRAIN_FOCAL))
#: Folder of the sequences below the evaluation data root.
EVAL_DIR = "data/synthetic_eval"


@dataclass
class SyntheticScore:
    """Scores of one result against one synthetic scene (lengths in scene units, ~metres; angles in degrees)."""

    ate: float
    rpe_trans: float
    rpe_rot: float
    trivial_ate: float
    abs_rel: float
    delta_1_25: float
    n_frames: int

    def lines(self) -> str:
        """Human-readable summary (what ``make demo`` prints)."""
        return (f"camera trajectory: ATE {self.ate:.4f} (trivial baseline {self.trivial_ate:.4f}, ratio "
                f"{self.ate / self.trivial_ate:.2f}), RPE trans {self.rpe_trans:.4f}, RPE rot {self.rpe_rot:.3f} deg\n"
                f"depth (one median scale per sequence): Abs Rel {self.abs_rel:.3f}, delta<1.25 "
                f"{self.delta_1_25:.3f}  [{self.n_frames} frames]")


def scene_config(seed: int, frames: int = EVAL_FRAMES):
    """The :class:`SceneConfig` of a held-out evaluation sequence."""
    from monst3r.datasets.synthetic import SceneConfig

    return SceneConfig(width=EVAL_SIZE, height=EVAL_SIZE, num_frames=frames, seed=int(seed), fov_deg=EVAL_FOV_DEG)


def write_eval_scene(out, seed: int, frames: int = EVAL_FRAMES) -> Path:
    """Write one held-out sequence into ``out`` unless it already holds exactly that sequence (a scene written with
    other parameters, e.g. an older 512x288 demo input, is replaced; atomic, see
    :func:`monst3r.datasets.synthetic.write_scene`)."""
    from monst3r.datasets.synthetic import SyntheticScene, write_scene
    from monst3r.datasets.synthetic.collection import is_complete_scene

    config = scene_config(seed, frames)
    if is_complete_scene(Path(out), config):
        return Path(out)
    return write_scene(SyntheticScene(config), out, overwrite=True)


def ensure_eval_sequences(root=".", log=print) -> Path:
    """Generate the held-out sequences under ``<root>/data/synthetic_eval`` when missing; returns that folder."""
    from monst3r.datasets.synthetic.collection import EVAL_SEEDS, is_complete_scene

    base = Path(root) / EVAL_DIR
    for seed in EVAL_SEEDS:
        folder = base / f"scene{seed}"
        if not is_complete_scene(folder, scene_config(seed)):
            if log:
                log(f"generating the held-out synthetic sequence {folder}")
            write_eval_scene(folder, seed)
    return base


def trivial_ate(gt_c2w: np.ndarray) -> float:
    """ATE of the trivial trajectory (all cameras at the mean GT position): RMS distance from the mean."""
    pos = np.asarray(gt_c2w)[:, :3, 3]
    return float(np.sqrt(((pos - pos.mean(0)) ** 2).sum(1).mean()))


def score_arrays(pred_c2w: np.ndarray, pred_depth: np.ndarray, gt_c2w: np.ndarray, gt_depth: np.ndarray
                 ) -> SyntheticScore:
    """Scores from arrays: ``pred_c2w, gt_c2w [N,4,4]``, ``pred_depth, gt_depth [N,H,W]`` (same grid)."""
    from monst3r.eval.metrics import depth_evaluation, pose_metrics_c2w

    if pred_depth.shape != gt_depth.shape:
        raise Monst3rInputError(f"predicted depth {pred_depth.shape} and GT depth {gt_depth.shape} differ in shape: "
                                "run the demo with --image_size 224 on the 224x224 synthetic sequences")
    pose = pose_metrics_c2w(pred_c2w, gt_c2w)
    depth = depth_evaluation(pred_depth.astype(np.float64), gt_depth.astype(np.float64), max_depth=None).metrics
    return SyntheticScore(ate=pose.ate, rpe_trans=pose.rpe_trans, rpe_rot=pose.rpe_rot_deg,
                          trivial_ate=trivial_ate(gt_c2w), abs_rel=float(depth["Abs Rel"]),
                          delta_1_25=float(depth["δ < 1.25"]), n_frames=len(gt_c2w))


def score_result(result_dir, scene_dir) -> SyntheticScore:
    """Score a result folder (the demo's, or the pose evaluation's) against a synthetic scene folder."""
    from monst3r.io import load_result

    scene_dir = Path(scene_dir)
    if not (scene_dir / "poses.npy").is_file():
        raise Monst3rInputError(f"{scene_dir} is not a synthetic scene folder (no poses.npy): give the folder "
                                "written by python -m monst3r.datasets.synthetic or monst3r.eval.synthetic prepare")
    res = load_result(result_dir)
    gt_c2w = np.load(scene_dir / "poses.npy")
    n = len(res.poses)
    if n != len(gt_c2w):
        raise Monst3rInputError(f"{result_dir} has {n} frames but {scene_dir} has {len(gt_c2w)}")
    gt_depth = np.stack([np.load(scene_dir / "depth" / f"{i:05d}.npy") for i in range(n)])
    pred_depth = np.stack([np.asarray(d) for d in res.depths])
    return score_arrays(np.asarray(res.poses), pred_depth, gt_c2w, gt_depth)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command-line entry point (see module docstring); returns the exit status."""
    from monst3r.utils.cli_errors import OneLineArgumentParser

    p = OneLineArgumentParser(prog="python -m monst3r.eval.synthetic", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    prep = sub.add_parser("prepare", help="generate the held-out sequences")
    prep.add_argument("--root", default=".", help="evaluation data root (the sequences go to ROOT/data/...)")
    one = sub.add_parser("scene", help="write one sequence of the benchmark's kind (e.g. the demo's, seed 0)")
    one.add_argument("--out", required=True)
    one.add_argument("--seed", type=int, default=0)
    one.add_argument("--frames", type=int, default=EVAL_FRAMES)
    sc = sub.add_parser("score", help="score a result folder against a synthetic scene folder")
    sc.add_argument("result")
    sc.add_argument("scene")
    sc.add_argument("--json", default=None, help="also write the scores as JSON here")
    args = p.parse_args(argv)
    try:
        if args.cmd == "prepare":
            print(f"held-out sequences in {ensure_eval_sequences(args.root)}")
            return 0
        if args.cmd == "scene":
            write_eval_scene(args.out, args.seed, args.frames)
            print(f"synthetic sequence (seed {args.seed}, {args.frames} frames, {EVAL_SIZE}x{EVAL_SIZE}) in {args.out}")
            return 0
        score = score_result(args.result, args.scene)
    except Monst3rInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(score.lines())
    if args.json:
        Path(args.json).write_text(json.dumps(asdict(score), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
