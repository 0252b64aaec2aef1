#!/usr/bin/env python
"""4D viewer of a real-time (feed-forward) result folder: ``demo.py --real_time`` output.

    python viser/visualizer_monst3r_realtime.py --data_path demo_tmp/NULL

Reads ``pts3d2_p<k>.npy`` ([H,W,6]: points in the reference camera + RGB) and ``conf2_p<k>.npy`` (or the
``*1_*`` files with ``--no-head2``), or a single ``.npy`` of shape [T, N, 6]. Points with raw confidence above
``--conf_thre`` are shown, one frame per time step, centred on their global mean. Listens on 127.0.0.1.
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


def load_frames(path: Path, head2: bool = True, conf_thre: float = 1.0, max_frames: int = 200,
                downsample: int = 1):
    """-> list of ``(xyz [M,3] float32, rgb [M,3] uint8)`` per time step, centred on the global mean."""
    from monst3r.errors import Monst3rInputError

    side = 2 if head2 else 1
    if path.is_file() and path.suffix == ".npy":
        arr = np.load(path)
        if arr.ndim != 3 or arr.shape[-1] != 6:
            raise Monst3rInputError(f"{path}: expected an array [T, N, 6], got {arr.shape}")
        frames = [(a[:, :3], a[:, 3:], np.ones(len(a), bool)) for a in arr[:max_frames]]
    else:
        pts = sorted(path.glob(f"pts3d{side}_p*.npy"), key=_index)[:max_frames]
        if not pts:
            raise Monst3rInputError(f"no pts3d{side}_p*.npy files in {path} (run demo.py --real_time first)")
        frames = []
        for p in pts:
            a = np.load(p)[::downsample, ::downsample]
            conf_file = p.with_name(p.name.replace(f"pts3d{side}", f"conf{side}"))
            conf = np.load(conf_file)[::downsample, ::downsample] if conf_file.exists() else np.full(a.shape[:2], np.inf)
            frames.append((a[..., :3].reshape(-1, 3), a[..., 3:].reshape(-1, 3), (conf > conf_thre).reshape(-1)))
    centre = np.concatenate([xyz[m] for xyz, _, m in frames]).mean(0) if frames else np.zeros(3)
    out = []
    for xyz, rgb, m in frames:
        rgb = rgb[m]
        if rgb.size and rgb.max() > 1.5:  # 0..255 colours
            rgb = rgb / 255.0
        out.append(((xyz[m] - centre).astype(np.float32), (np.clip(rgb, 0, 1) * 255).astype(np.uint8)))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data_path", "--data", dest="data_path", type=Path, default=Path("./demo_tmp/NULL"))
    p.add_argument("--conf_thre", type=float, default=1.0)
    p.add_argument("--point_size", type=float, default=0.002)
    p.add_argument("--max_frames", type=int, default=200)
    p.add_argument("--downsample_factor", type=int, default=1)
    p.add_argument("--no-head2", dest="head2", action="store_false", help="show view-1 (reference) points")
    p.add_argument("--fps", type=float, default=20.0)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--exit_after_build", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    from monst3r.errors import Monst3rInputError

    try:
        import viser
    except ImportError:
        print("error: the viewer needs the 'viser' package (pip install viser)", file=sys.stderr)
        return 2
    try:
        frames = load_frames(args.data_path, args.head2, args.conf_thre, args.max_frames, args.downsample_factor)
    except Monst3rInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from monst3r.viewer import add_playback_gui, serve

    server = viser.ViserServer(host=args.host, port=args.port, verbose=False)
    server.scene.set_up_direction("-y")
    nodes = []
    for k, (xyz, rgb) in enumerate(frames):
        nodes.append(server.scene.add_frame(f"/frames/t{k}", show_axes=False))
        server.scene.add_point_cloud(f"/frames/t{k}/points", points=xyz, colors=rgb, point_size=args.point_size,
                                     point_shape="rounded", precision="float32")
    step, _ = add_playback_gui(server, nodes, fps=args.fps)
    print(f"viewer: {len(nodes)} frames from {args.data_path} at http://{args.host}:{server.get_port()}")
    return serve(server, step, args.exit_after_build)


if __name__ == "__main__":
    sys.exit(main())
