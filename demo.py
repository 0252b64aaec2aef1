#!/usr/bin/env python
"""MonST3R demo: a video or a folder of frames -> camera poses, intrinsics, depth, confidence, dynamic masks.

    python demo.py --input video.mp4 --output_dir demo_tmp --seq_name myvideo
    python demo.py --input frames/ --output_dir out --seq_name s --real_time          # feed-forward, no optimisation
    python demo.py --input frames/ --seq_name s --window_wise --window_size 100       # the original's window mode
    python demo.py --input long.mp4 --seq_name s --streaming --num_frames 1000        # long videos, bounded memory
    python demo.py                                                                    # Gradio GUI (needs gradio)

Defaults are those of the original's non-interactive run. The result folder keeps the original's file names;
view it with ``python viser/visualizer_monst3r.py --data <output_dir>/<seq_name>``.

The result folder appears complete or not at all (built in a hidden sibling and swapped in); a re-run replaces the
files the previous run wrote and keeps every other file in it; nothing outside it is touched (the original's
two-frame extras, written into --output_dir, are written inside the result folder). Every option is checked
before any work; a mistake is one line ``error: ...`` and exit status 2.
"""
from __future__ import annotations

import argparse
import logging
import sys


def str2bool(v: str) -> bool:
    if isinstance(v, bool):
        return v
    if v.lower() in ("1", "true", "yes", "y", "on"):
        return True
    if v.lower() in ("0", "false", "no", "n", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean, got {v!r}")


class _OneLineParser(argparse.ArgumentParser):
    """argparse errors as the project's one line ``error: ...`` (exit 2), without the usage block."""

    def error(self, message):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def get_parser() -> argparse.ArgumentParser:
    from monst3r.pipeline import DEFAULT_MODEL_NAME, DEFAULT_WEIGHTS

    p = _OneLineParser(prog="demo.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                       allow_abbrev=False)
    io = p.add_argument_group("input / output")
    io.add_argument("--input", "--input_dir", dest="input", default=None, nargs="+",
                    help="folder of frames, a video file, or image files; without it the Gradio GUI starts")
    io.add_argument("--output_dir", default="./demo_tmp", help="parent folder of the result (default ./demo_tmp)")
    io.add_argument("--seq_name", default="NULL", help="result folder name inside --output_dir (default NULL); a re-run replaces the files the "
                         "previous run wrote there and keeps any other file")
    io.add_argument("--image_size", type=int, default=512, choices=[512, 224])
    io.add_argument("--fps", type=float, default=0, help="video sampling rate (0 = every frame)")
    io.add_argument("--num_frames", type=int, default=200, help="maximum frames read from a video")
    io.add_argument("--export", default=None, help="extra formats, comma separated: ply,colmap (written into the result folder; not with "
                         "--real_time)")
    io.add_argument("--silent", action="store_true")
    m = p.add_argument_group("model")
    m.add_argument("--weights", default=DEFAULT_WEIGHTS, help="local .pth or model folder (used when it exists)")
    m.add_argument("--model_name", default=DEFAULT_MODEL_NAME, help="Hugging Face repo used when --weights is absent")
    m.add_argument("--device", default="auto", help="auto (cuda if available), cuda, cuda:N or cpu")
    m.add_argument("--batch_size", type=int, default=16, help="pairs per network batch")
    m.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"],
                   help="network precision (fp32 = the original's; bf16 is faster on recent GPUs)")
    o = p.add_argument_group("optimization (the original's GUI settings)")
    o.add_argument("--scenegraph_type", default="swinstride",
                   choices=["complete", "swin", "swinstride", "swin2stride", "oneref"])
    o.add_argument("--winsize", type=int, default=5)
    o.add_argument("--refid", type=int, default=0)
    o.add_argument("--niter", type=int, default=300)
    o.add_argument("--schedule", default="linear", choices=["linear", "cosine"])
    o.add_argument("--min_conf_thr", type=float, default=1.1, help="confidence threshold of the exported points")
    o.add_argument("--temporal_smoothing_weight", type=float, default=0.01)
    o.add_argument("--translation_weight", type=float, default=1.0)
    o.add_argument("--shared_focal", type=str2bool, default=True)
    o.add_argument("--flow_loss_weight", type=float, default=0.01, help="0 disables optical flow entirely")
    o.add_argument("--flow_loss_start_iter", type=float, default=0.1)
    o.add_argument("--flow_loss_threshold", type=float, default=25)
    o.add_argument("--flow_weights", default=None, help="flow checkpoint (default: SEA-RAFT in third_party/RAFT/models)")
    o.add_argument("--use_gt_mask", action="store_true", help="use the masks loaded with the frames (no flow masks)")
    o.add_argument("--use_gt_davis_masks", action="store_true",
                   help="masks from data/davis/DAVIS/masked_images/480p/<seq_name>")
    o.add_argument("--dynamic_masks", default=None, help="folder of per-frame masks (same file names as the frames)")
    o.add_argument("--intrinsics", default=None,
                   help="known intrinsics at the working resolution, held fixed: 'f', 'fx,fy,cx,cy' or a K file "
                        "(finite positive numbers; not with --real_time or two frames, which do not optimise)")
    o.add_argument("--no_sam2", action="store_true", help="skip SAM2 refinement of the dynamic masks")
    o.add_argument("--sam2_checkpoint", default=None)
    md = p.add_argument_group("modes")
    md.add_argument("--not_batchify", action="store_true", help="memory-saving non-batched optimizer")
    md.add_argument("--real_time", action="store_true", help="feed-forward mode (no optimization)")
    md.add_argument("--window_wise", action="store_true", help="window-by-window optimization for long videos")
    md.add_argument("--window_size", type=int, default=100)
    md.add_argument("--window_overlap_ratio", type=float, default=0.5)
    md.add_argument("--streaming", action="store_true",
                    help="long videos in memory bounded by --window_size: chunks of --window_size frames, each "
                         "continuing the previous one (as --prev_output_dir does); time linear in frames")
    md.add_argument("--prev_output_dir", default=None,
                    help="previous window's result folder (with --window_wise or --streaming)")
    md.add_argument("--prev_output_index", type=int, default=None)
    g = p.add_argument_group("GUI")
    g.add_argument("--local_network", action="store_true", help="serve the GUI on 0.0.0.0")
    g.add_argument("--server_name", default=None)
    g.add_argument("--server_port", type=int, default=None)
    g.add_argument("--share", action="store_true")
    return p


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: the write in progress is undone (the previous result stays), exit 143."""


def _on_sigterm(signum, frame):
    raise Terminated()


def main(argv=None) -> int:
    import signal

    args = get_parser().parse_args(argv)
    try:
        signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread (main() called from a thread): keep the default
        pass
    logging.basicConfig(level=logging.WARNING if args.silent else logging.INFO, format="%(message)s")
    if args.silent:
        import os

        os.environ["TQDM_DISABLE"] = "1"
    from monst3r.errors import Monst3rInputError
    from monst3r.utils.cli_errors import error_exit

    try:
        if args.input is None:
            try:
                import gradio  # noqa: F401
            except ImportError:
                return error_exit("no --input given and the GUI needs gradio: pass --input <video or folder>, or "
                                  "pip install gradio")
            from monst3r.gui import launch

            launch(args)
            return 0
        from monst3r.pipeline import run_demo

        run_demo(args)
        return 0
    except Monst3rInputError as exc:
        return error_exit(exc)
    except KeyboardInterrupt as exc:
        print(f"{'terminated' if isinstance(exc, Terminated) else 'interrupted'}; nothing was written (a previous "
              "result is left as it was)", file=sys.stderr)
        return 143 if isinstance(exc, Terminated) else 130


if __name__ == "__main__":
    sys.exit(main())
