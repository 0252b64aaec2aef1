#!/usr/bin/env python
"""4D viewer of a MonST3R result folder (ours or the original's) in the browser, on the PyPI ``viser`` package.

    python viser/visualizer_monst3r.py --data demo_tmp/lady-running
    python viser/visualizer_monst3r.py --data demo_tmp/lady-running --init_conf --fg_conf_thre 1.0   # fewer floaters
    python viser/visualizer_monst3r.py --data demo_tmp/lady-running --no_mask                         # noisy masks

Then open http://127.0.0.1:8080 (``--host 0.0.0.0`` to listen on every interface). Thresholds are on log
confidence, as in the original viewer; see ``monst3r/viewer.py`` for the conventions. Scenes of any size are
shown: coordinates are divided by one global factor when the scene is far from unit size (``--scene_scale``;
the factor is printed and shown in the GUI), points with non-finite coordinates are dropped with a warning.
A damaged or wrong folder gives one ``error: ...`` line and exit code 2.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere without installing


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", "--data_path", dest="data", type=Path, default=Path("./demo_tmp/NULL"),
                   help="result folder written by demo.py (default ./demo_tmp/NULL)")
    p.add_argument("--conf_thre", type=float, default=0.1, help="static points: log-confidence threshold")
    p.add_argument("--fg_conf_thre", type=float, default=0.0, help="dynamic points: log-confidence threshold")
    p.add_argument("--init_conf", action="store_true", help="threshold dynamic points on the initial confidence")
    p.add_argument("--no_mask", action="store_true", help="ignore dynamic masks: all confident pixels per frame")
    p.add_argument("--point_size", type=float, default=0.001)
    p.add_argument("--camera_size", type=float, default=0.015)
    p.add_argument("--cam_thickness", type=float, default=1.5)
    p.add_argument("--axes_scale", type=float, default=0.1)
    p.add_argument("--downsample", type=int, default=1)
    p.add_argument("--bg_downsample", type=int, default=1)
    p.add_argument("--max_frames", type=int, default=None)
    p.add_argument("--fps", type=float, default=30.0)
    p.add_argument("--no_recenter", action="store_true", help="keep world coordinates (no middle-frame centring)")
    p.add_argument("--scene_scale", default="auto",
                   help="divide all coordinates (points and cameras) by this factor; 'auto' (default): 1 for "
                        "scenes of typical size 0.01..100, else the scene's power-of-ten size")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--exit_after_build", action="store_true", help=argparse.SUPPRESS)  # used by the tests
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from monst3r.viewer import build_scene, load_any, parse_scene_scale, run_viewer

    def load():
        return parse_scene_scale(args.scene_scale), load_any(args.data)

    def build(server, data):
        scale, res = data
        nodes, _ = build_scene(server, res, conf_thre=args.conf_thre, fg_conf_thre=args.fg_conf_thre,
                               use_init_conf=args.init_conf, no_mask=args.no_mask, point_size=args.point_size,
                               camera_size=args.camera_size, cam_thickness=args.cam_thickness,
                               axes_scale=args.axes_scale, downsample=args.downsample,
                               bg_downsample=args.bg_downsample, max_frames=args.max_frames,
                               recenter=not args.no_recenter, scale=scale)
        return nodes, f"scene scale {server.monst3r_scene_scale:g}; Ctrl-C to stop"

    return run_viewer(load, build, host=args.host, port=args.port, fps=args.fps,
                      exit_after_build=args.exit_after_build, source=args.data)


if __name__ == "__main__":
    sys.exit(main())
