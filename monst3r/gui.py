"""Gradio GUI of ``demo.py`` (optional: needs ``pip install gradio``). Runs the same :func:`run_demo` as the
command line; the model is loaded per run (cached on disk by the hub). Listens on 127.0.0.1 unless
``--local_network`` / ``--server_name`` say otherwise.

Started by ``python demo.py`` without ``--input``; every other ``demo.py`` flag (``--weights``, ``--device``,
``--image_size``, ``--output_dir``, ...) applies to the runs started from the page. A run writes
``<output_dir>/<seq_name>/`` exactly as the command line does, and shows the 3-D model (``scene.glb``), the frames,
a status line and the result files for download (``scene.glb``, ``pred_traj.txt``, ``pred_intrinsics.txt`` and
``<seq_name>.zip`` with the whole folder; the zip is an addition of ours, the original GUI offered the 3-D model and
the gallery only). The zip is built in a temporary folder of the GUI process (removed when it exits), never next to
the result: nothing outside the result folder is written. A user mistake shows as an error message on the page.

Like :mod:`monst3r.pipeline`, this is part of the demo's entry layer: it reads the demo's ``argparse.Namespace``
(the launch flags) and hands a copy with the page's settings to :func:`monst3r.pipeline.run_demo`, which turns it
into the typed settings.
"""
from __future__ import annotations

import atexit
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


def server_host(args) -> str:
    """The address the GUI listens on: loopback unless ``--local_network`` (all interfaces) or ``--server_name``."""
    return "0.0.0.0" if args.local_network else (args.server_name or "127.0.0.1")


_DOWNLOADS: list[str] = []  # the process's own folder for the zips offered for download (created on first use)


def _download_dir() -> str:
    if not _DOWNLOADS:
        _DOWNLOADS.append(tempfile.mkdtemp(prefix="monst3r_gui_dl_"))
        atexit.register(shutil.rmtree, _DOWNLOADS[0], True)
    return _DOWNLOADS[0]


def launch(args, block: bool = True):
    """Build and serve the app; returns the Blocks (``block=False`` returns right after start, for tests)."""
    app = build_app(args)
    out_root = Path(args.output_dir).expanduser().resolve()
    app.launch(server_name=server_host(args), server_port=args.server_port, share=args.share,
               prevent_thread_lock=not block, allowed_paths=[str(out_root), _download_dir()])  # served from there
    return app


def _result_files(out: Path) -> list:
    """Download list of a result folder: the main files plus a zip of the whole folder (in the GUI's own temporary
    folder, see the module docstring)."""
    names = ("scene.glb", "pred_traj.txt", "pred_traj_tum.txt", "pred_intrinsics.txt")
    files = [out / name for name in names if (out / name).is_file()]
    archive = shutil.make_archive(os.path.join(_download_dir(), out.name), "zip", root_dir=out)
    return [str(f) for f in files] + [archive]


def build_app(args):
    """The Gradio Blocks of the demo (not started)."""
    import gradio as gr

    from monst3r.errors import Monst3rInputError
    from monst3r.pipeline import run_demo

    # the settings start at the launch flags' values (demo.py's defaults are the original GUI's, except Num Frames:
    # 100 on the page as in the original GUI, --num_frames 200 on the command line)
    def run(files, seq_name, scenegraph_type, winsize, refid, niter, schedule, min_conf_thr, tsw, tw, shared_focal,
            flow_w, flow_start, flow_thr, fps, num_frames):
        a = copy.copy(args)
        a.input = None
        try:
            a.input = _stage_inputs(files)
            a.seq_name = seq_name or "NULL"
            a.scenegraph_type, a.winsize, a.refid = scenegraph_type, int(winsize), int(refid)
            a.niter, a.schedule, a.min_conf_thr = int(niter), schedule, float(min_conf_thr)
            try:
                a.translation_weight = float(tw)
            except ValueError:
                raise Monst3rInputError(f"translation_weight must be a number, got {tw!r}") from None
            a.temporal_smoothing_weight, a.shared_focal = float(tsw), bool(shared_focal)
            a.flow_loss_weight, a.flow_loss_start_iter = float(flow_w), float(flow_start)
            a.flow_loss_threshold, a.fps, a.num_frames = float(flow_thr), float(fps), int(num_frames)
            out = Path(run_demo(a))
        except Monst3rInputError as exc:
            raise gr.Error(str(exc))
        finally:
            if a.input and os.path.basename(a.input).startswith("monst3r_gui_"):
                shutil.rmtree(a.input, ignore_errors=True)  # our copy of the uploaded frames
        frames = sorted(out.glob("frame_*.png"))
        glb = out / "scene.glb"
        status = f"Done: {len(frames)} frames, result in `{out}`"
        return (str(glb) if glb.exists() else None), [str(f) for f in frames], _result_files(out), status

    with gr.Blocks(title="MonST3R Demo") as app:
        gr.Markdown("# MonST3R Demo")
        gr.Markdown(f"weights `{args.weights}` on device `{args.device}`, image size {args.image_size}; results "
                    f"in `{args.output_dir}`")
        files = gr.File(file_count="multiple", label="video or frames")
        with gr.Row():
            seq_name = gr.Textbox(value=args.seq_name, label="Sequence Name")
            scenegraph_type = gr.Dropdown(["complete", "swin", "oneref", "swinstride", "swin2stride"],
                                          value=args.scenegraph_type, label="Scenegraph")
            winsize = gr.Slider(1, 20, value=args.winsize, step=1, label="Window size")
            refid = gr.Slider(0, 200, value=args.refid, step=1, label="Reference id")
        with gr.Row():
            niter = gr.Number(value=args.niter, precision=0, minimum=1, maximum=5000, label="num_iterations")
            schedule = gr.Dropdown(["linear", "cosine"], value=args.schedule, label="schedule")
            min_conf_thr = gr.Slider(0, 20, value=args.min_conf_thr, step=0.01, label="min_conf_thr")
            tsw = gr.Slider(0, 0.1, value=args.temporal_smoothing_weight, step=0.001, label="temporal_smoothing_weight")
            tw = gr.Textbox(value=str(args.translation_weight), label="translation_weight")
            shared_focal = gr.Checkbox(value=bool(args.shared_focal), label="Shared Focal Length")
        with gr.Row():
            flow_w = gr.Slider(0, 1, value=args.flow_loss_weight, step=0.001, label="Flow Loss Weight")
            flow_start = gr.Slider(0, 1, value=args.flow_loss_start_iter, step=0.01, label="Flow Loss Start Iter")
            flow_thr = gr.Slider(0, 100, value=args.flow_loss_threshold, step=1, label="Flow Loss Threshold")
            fps = gr.Slider(0, 60, value=args.fps, step=1, label="FPS")
            num_frames = gr.Slider(1, 200, value=100, step=1, label="Num Frames")
        btn = gr.Button("Run", variant="primary")
        status = gr.Markdown("", elem_id="monst3r-status")
        model3d = gr.Model3D(label="scene", elem_id="monst3r-model")
        gallery = gr.Gallery(label="frames", columns=4)
        downloads = gr.File(label="result files", file_count="multiple", interactive=False, elem_id="monst3r-files")
        btn.click(run, [files, seq_name, scenegraph_type, winsize, refid, niter, schedule, min_conf_thr, tsw, tw,
                        shared_focal, flow_w, flow_start, flow_thr, fps, num_frames],
                  [model3d, gallery, downloads, status])
    return app
