#!/usr/bin/env python
"""4D viewer of a real-time (feed-forward) result folder: ``demo.py --real_time`` output.

    python viser/visualizer_monst3r_realtime.py --data_path demo_tmp/NULL

Reads ``pts3d2_p<k>.npy`` ([H,W,6]: points in the reference camera + RGB) and ``conf2_p<k>.npy`` (or the
``*1_*`` files with ``--no-head2``), or a single ``.npy`` of shape [T, N, 6]. Points with raw confidence above
``--conf_thre`` are shown, one frame per time step, centred on their global mean (and scaled to a unit-ish
size when far from it, see ``load_frames``). Listens on 127.0.0.1. A missing or damaged input gives one
``error: ...`` line and exit code 2.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _index(p: Path) -> int:
    m = re.search(r"_p(\d+)\.npy$", p.name)
    return int(m.group(1)) if m else -1


def _load_npy(path: Path) -> np.ndarray:
    from monst3r.errors import Monst3rInputError

    try:
        return np.load(path, allow_pickle=False)
    except Exception as exc:  # truncated/garbage file, pickled object, unreadable: one line instead of a traceback
        msg = " ".join(str(exc).split())[:200]
        raise Monst3rInputError(f"cannot read {path}: {type(exc).__name__}: {msg} (re-run demo.py --real_time)"
                                ) from None


def load_frames(path: Path, head2: bool = True, conf_thre: float = 1.0, max_frames: int = 200,
                downsample: int = 1, scale="auto"):
    """-> (list of ``(xyz [M,3] float32, rgb [M,3] uint8)`` per time step, scale factor).

    Points are centred on the global mean of the shown points and divided by one factor (``scale``: ``"auto"`` =
    :func:`monst3r.viewer.scene_scale`'s rule on the typical distance from the centre, or a number), so that any
    finite scene is drawn (deliberate difference from the original, whose float16 clouds overflowed beyond 65504).
    Points with non-finite coordinates are dropped with one warning line. A missing/unreadable/wrong-shaped input
    raises :class:`Monst3rInputError`.
    """
    import math

    from monst3r.errors import Monst3rInputError
    from monst3r.viewer import UNSCALED_RANGE, logger

    side = 2 if head2 else 1
    downsample = max(1, int(downsample))
    if not path.exists():
        raise Monst3rInputError(f"{path} does not exist: pass --data_path the folder demo.py --real_time wrote")
    if path.is_file():
        if path.suffix != ".npy":
            raise Monst3rInputError(f"{path} is a file, not a real-time result folder or a [T, N, 6] .npy file")
        arr = _load_npy(path)
        if arr.ndim != 3 or arr.shape[-1] != 6 or not np.issubdtype(arr.dtype, np.number):
            raise Monst3rInputError(f"{path}: expected a numeric array [T, N, 6], got {arr.dtype} {arr.shape}")
        frames = [(a[:, :3], a[:, 3:], np.ones(len(a), bool)) for a in arr[:max_frames]]
    else:
        pts = sorted(path.glob(f"pts3d{side}_p*.npy"), key=_index)[:max_frames]
        if not pts:
            raise Monst3rInputError(f"no pts3d{side}_p*.npy files in {path} (run demo.py --real_time first)")
        frames = []
        for p in pts:
            a = _load_npy(p)
            if a.ndim != 3 or a.shape[-1] != 6 or not np.issubdtype(a.dtype, np.number):
                raise Monst3rInputError(f"{p}: expected a numeric array [H, W, 6] (xyz + rgb), got {a.dtype} {a.shape}"
                                        f" (re-run demo.py --real_time)")
            conf_file = p.with_name(p.name.replace(f"pts3d{side}", f"conf{side}"))
            if conf_file.exists():
                conf = _load_npy(conf_file)
                if conf.shape != a.shape[:2] or not np.issubdtype(conf.dtype, np.number):
                    raise Monst3rInputError(f"{conf_file}: expected confidences [H, W] matching {p.name}, got "
                                            f"{conf.shape} (re-run demo.py --real_time)")
            else:
                conf = np.full(a.shape[:2], np.inf)
            a, conf = a[::downsample, ::downsample], conf[::downsample, ::downsample]
            frames.append((a[..., :3].reshape(-1, 3), a[..., 3:].reshape(-1, 3), (conf > conf_thre).reshape(-1)))
    dropped = dropped_frames = 0
    kept = []
    for xyz, rgb, m in frames:
        xyz = np.asarray(xyz, np.float64)
        finite = np.isfinite(xyz).all(-1)
        dropped += int((m & ~finite).sum())
        dropped_frames += bool((m & ~finite).any())
        kept.append((xyz, rgb, m & finite))
    if dropped:
        logger.warning("warning: dropped %d points with non-finite coordinates in %d of %d frames", dropped,
                       dropped_frames, len(frames))
    shown = [xyz[m] for xyz, _, m in kept]
    allpts = np.concatenate(shown) if shown else np.zeros((0, 3))
    centre = allpts.mean(0) if len(allpts) else np.zeros(3)
    if not np.isfinite(centre).all():  # a sum beyond float64: centre on the median instead
        centre = np.median(allpts, 0)
    if scale == "auto":
        typical = float(np.median(np.linalg.norm(allpts - centre, axis=-1))) if len(allpts) else 1.0
        ok = math.isfinite(typical) and typical > 0 and not UNSCALED_RANGE[0] <= typical <= UNSCALED_RANGE[1]
        scale = float(10.0 ** round(math.log10(typical))) if ok else 1.0
    scale = float(scale)
    if scale != 1.0:
        logger.info("note: coordinates divided by %g (typical scene size outside %g..%g units)", scale,
                       *UNSCALED_RANGE)
    out = []
    for xyz, rgb, m in kept:
        rgb = np.nan_to_num(np.asarray(rgb[m], np.float64))
        if rgb.size and rgb.max() > 1.5:  # 0..255 colours
            rgb = rgb / 255.0
        xyz = (xyz[m] - centre) / scale
        good = (np.abs(xyz) < 1e30).all(-1)
        out.append((xyz[good].astype(np.float32), (np.clip(rgb[good], 0, 1) * 255).astype(np.uint8)))
    return out, scale


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data_path", "--data", dest="data_path", type=Path, default=Path("./demo_tmp/NULL"))
    p.add_argument("--conf_thre", type=float, default=1.0)
    p.add_argument("--point_size", type=float, default=0.002)
    p.add_argument("--max_frames", type=int, default=200)
    p.add_argument("--downsample_factor", type=int, default=1)
    p.add_argument("--no-head2", dest="head2", action="store_false", help="show view-1 (reference) points")
    p.add_argument("--fps", type=float, default=20.0)
    p.add_argument("--scene_scale", default="auto", help="divide coordinates by this factor ('auto': see load_frames)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--exit_after_build", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    from monst3r.viewer import parse_scene_scale, run_viewer

    def load():
        return load_frames(args.data_path, args.head2, args.conf_thre, args.max_frames, args.downsample_factor,
                           parse_scene_scale(args.scene_scale))

    def build(server, data):
        frames, scale = data
        server.scene.set_up_direction("-y")
        nodes = []
        for k, (xyz, rgb) in enumerate(frames):
            nodes.append(server.scene.add_frame(f"/frames/t{k}", show_axes=False))
            server.scene.add_point_cloud(f"/frames/t{k}/points", points=xyz, colors=rgb,
                                         point_size=args.point_size, point_shape="rounded", precision="float32")
        with server.gui.add_folder("Scene"):
            server.gui.add_text("Scene scale", initial_value=f"1 unit = {scale:g} result units", disabled=True)
        return nodes, f"scene scale {scale:g}"

    return run_viewer(load, build, host=args.host, port=args.port, fps=args.fps,
                      exit_after_build=args.exit_after_build, source=args.data_path)


if __name__ == "__main__":
    sys.exit(main())
