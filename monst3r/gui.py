"""Gradio GUI of ``demo.py`` (optional: needs ``pip install gradio``). Runs the same :func:`run_demo` as the
command line; the model is loaded per run (cached on disk by the hub). Listens on 127.0.0.1 unless
``--local_network`` / ``--server_name`` say otherwise."""
from __future__ import annotations

import copy
import os
import shutil
import tempfile
from pathlib import Path


def _stage_inputs(files) -> str:
    paths = [f if isinstance(f, str) else f.name for f in (files or [])]
    if not paths:
        from monst3r.errors import Monst3rInputError

        raise Monst3rInputError("upload a video or some frames first")
    if len(paths) == 1:
        return paths[0]
    folder = tempfile.mkdtemp(prefix="monst3r_gui_")
    for p in paths:
        shutil.copy(p, os.path.join(folder, os.path.basename(p)))
    return folder


def launch(args, block: bool = True):
    """Build and serve the app; returns the Blocks (``block=False`` returns right after start, for tests)."""
    app = build_app(args)
    host = "0.0.0.0" if args.local_network else (args.server_name or "127.0.0.1")
    app.launch(server_name=host, server_port=args.server_port, share=args.share, prevent_thread_lock=not block)
    return app


def build_app(args):
    """The Gradio Blocks of the demo (not started)."""
    import gradio as gr

    from monst3r.errors import Monst3rInputError
    from monst3r.pipeline import run_demo

    def run(files, seq_name, scenegraph_type, winsize, refid, niter, schedule, min_conf_thr, tsw, tw, shared_focal,
            flow_w, flow_start, flow_thr, fps, num_frames):
        a = copy.copy(args)
        a.input = _stage_inputs(files)
        staged = a.input if os.path.basename(str(a.input)).startswith("monst3r_gui_") else None
        a.seq_name = seq_name or "NULL"
        a.scenegraph_type, a.winsize, a.refid = scenegraph_type, int(winsize), int(refid)
        a.niter, a.schedule, a.min_conf_thr = int(niter), schedule, float(min_conf_thr)
        a.temporal_smoothing_weight, a.translation_weight, a.shared_focal = float(tsw), float(tw), bool(shared_focal)
        a.flow_loss_weight, a.flow_loss_start_iter, a.flow_loss_threshold = float(flow_w), float(flow_start), float(flow_thr)
        a.fps, a.num_frames = float(fps), int(num_frames)
        try:  # run_demo validates every setting and writes through monst3r.io.result_folder (user files kept)
            out = run_demo(a)
        except Monst3rInputError as exc:
            raise gr.Error(str(exc))
        finally:
            if staged:  # our own copy of the uploads (tempfile.mkdtemp above), never the user's files
                shutil.rmtree(staged, ignore_errors=True)
        frames = sorted(Path(out).glob("frame_*.png"))
        glb = Path(out) / "scene.glb"
        return (str(glb) if glb.exists() else None), [str(f) for f in frames]

    with gr.Blocks(title="MonST3R Demo") as app:
        gr.Markdown("# MonST3R Demo")
        files = gr.File(file_count="multiple", label="video or frames")
        with gr.Row():
            seq_name = gr.Textbox(value=args.seq_name, label="Sequence Name")
            scenegraph_type = gr.Dropdown(["complete", "swin", "oneref", "swinstride", "swin2stride"],
                                          value="swinstride", label="Scenegraph")
            winsize = gr.Slider(1, 20, value=5, step=1, label="Window size")
            refid = gr.Slider(0, 200, value=0, step=1, label="Reference id")
        with gr.Row():
            niter = gr.Number(value=300, precision=0, minimum=1, maximum=5000, label="num_iterations")
            schedule = gr.Dropdown(["linear", "cosine"], value="linear", label="schedule")
            min_conf_thr = gr.Slider(0, 20, value=1.1, step=0.01, label="min_conf_thr")
            tsw = gr.Slider(0, 0.1, value=0.01, step=0.001, label="temporal_smoothing_weight")
            tw = gr.Textbox(value="1.0", label="translation_weight")
            shared_focal = gr.Checkbox(value=True, label="Shared Focal Length")
        with gr.Row():
            flow_w = gr.Slider(0, 1, value=0.01, step=0.001, label="Flow Loss Weight")
            flow_start = gr.Slider(0, 1, value=0.1, step=0.01, label="Flow Loss Start Iter")
            flow_thr = gr.Slider(0, 100, value=25, step=1, label="Flow Loss Threshold")
            fps = gr.Slider(0, 60, value=0, step=1, label="FPS")
            num_frames = gr.Slider(1, 200, value=100, step=1, label="Num Frames")
        btn = gr.Button("Run")
        model3d = gr.Model3D(label="scene")
        gallery = gr.Gallery(label="frames", columns=4)
        btn.click(run, [files, seq_name, scenegraph_type, winsize, refid, niter, schedule, min_conf_thr, tsw, tw,
                        shared_focal, flow_w, flow_start, flow_thr, fps, num_frames], [model3d, gallery])
    return app
