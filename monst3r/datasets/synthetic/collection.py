"""Many synthetic scenes at once: the training set of the compact model and the held-out evaluation sequences.

``write_collection(root, seeds, ...)`` writes one scene folder per seed, ``root/scene<seed>/`` (the layout of
:func:`monst3r.datasets.synthetic.write_scene`), with a pool of worker processes. A scene folder that is already
complete (its ``meta.json`` names the same parameters) is kept, so an interrupted run resumes where it stopped;
each scene is written atomically, so none is ever half-written.

Seed ranges are written ``START:STOP`` (Python's half-open range, ``1000:1240``) or as a comma list.

Command line::

    python -m monst3r.datasets.synthetic.collection --out DIR --seeds 1000:1240 --frames 24 --size 400x225 \
        [--objects 3] [--workers 2]
"""
from __future__ import annotations

import json
import multiprocessing
import sys
import time
from pathlib import Path
from typing import Iterable, List, Optional, Sequence

from monst3r.datasets.synthetic.config import SceneConfig, parse_size
from monst3r.errors import Monst3rInputError

#: Seeds of the compact model's training scenes (``make train-small``); nothing held out may use them.
TRAIN_SEEDS = range(1000, 1240)
#: Held-out evaluation sequences (``--eval_dataset=synthetic``): seeds never used in training.
EVAL_SEEDS = (9001, 9002, 9003, 9004, 9005)


def parse_seeds(text: str) -> List[int]:
    """``'1000:1240'`` -> ``[1000, ..., 1239]``; ``'3,5,9'`` -> ``[3, 5, 9]``. Raises Monst3rInputError."""
    text = str(text).strip()
    try:
        if ":" in text:
            start, stop = (int(v) for v in text.split(":"))
            seeds = list(range(start, stop))
        else:
            seeds = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise Monst3rInputError(f"--seeds {text!r}: write START:STOP (e.g. 1000:1240) or a comma list") from None
    if not seeds or min(seeds) < 0 or len(seeds) > 100_000:
        raise Monst3rInputError(f"--seeds {text!r}: give 1 to 100000 non-negative seeds")
    return seeds


def is_complete_scene(folder: Path, config: SceneConfig) -> bool:
    """True when ``folder`` holds a complete scene written with exactly ``config``'s parameters."""
    try:
        meta = json.loads((folder / "meta.json").read_text())
    except (OSError, ValueError):
        return False
    keys = ("width", "height", "num_frames", "seed", "num_objects", "static_camera", "fov_deg")
    return all(meta.get(k) == getattr(config, k) for k in keys)


def _write_one(job: tuple) -> str:
    folder, config = job
    from monst3r.datasets.synthetic import SyntheticScene, write_scene

    if not is_complete_scene(folder, config):
        write_scene(SyntheticScene(config), folder, overwrite=True)
    return folder.name


def write_collection(root, seeds: Iterable[int], num_frames: int = 24, size: tuple = (400, 225),
                     num_objects: int = 3, workers: int = 2, log=print) -> Path:
    """Write ``root/scene<seed>/`` for every seed (existing complete scenes are kept). Returns ``root``."""
    root = Path(root).expanduser()
    if root.exists() and not root.is_dir():
        raise Monst3rInputError(f"--out {root} exists and is not a folder: choose another")
    jobs = []
    for seed in seeds:
        config = SceneConfig(width=size[0], height=size[1], num_frames=num_frames, seed=int(seed),
                             num_objects=num_objects)
        config.validate()
        jobs.append((root / f"scene{seed}", config))
    root.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    if workers <= 1:
        done = [_write_one(j) for j in jobs]
    else:
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            done = list(pool.imap_unordered(_write_one, jobs))
    if log:
        log(f"{len(done)} scenes ({num_frames} frames, {size[0]}x{size[1]}) in {root} "
            f"({time.perf_counter() - start:.0f} s)")
    return root


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command-line entry point; returns the exit status (0 ok, 2 bad input)."""
    from monst3r.utils.cli_errors import OneLineArgumentParser

    p = OneLineArgumentParser(prog="python -m monst3r.datasets.synthetic.collection",
                              description="Write one synthetic scene folder per seed.")
    p.add_argument("--out", required=True, help="root folder (scene<seed>/ inside)")
    p.add_argument("--seeds", default=f"{TRAIN_SEEDS.start}:{TRAIN_SEEDS.stop}", help="START:STOP or a,b,c")
    p.add_argument("--frames", type=int, default=24)
    p.add_argument("--size", default="400x225", help="WIDTHxHEIGHT")
    p.add_argument("--objects", type=int, default=3)
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args(argv)
    try:
        write_collection(args.out, parse_seeds(args.seeds), args.frames, parse_size(args.size), args.objects,
                         max(1, args.workers))
    except Monst3rInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
