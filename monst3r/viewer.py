"""Point extraction and scene building for the 4D browser viewer (``viser/visualizer_monst3r.py``).

Kept separate from the script so it can be tested without a browser. Everything reads a
:class:`monst3r.result.Reconstruction` (in memory or via :func:`monst3r.io.load_result`).

Conventions (documented choices, spec cli.md 6.3):
* Pixel centres are at integer coordinates, as everywhere else in MonST3R (the original viewer used +0.5).
* Thresholds compare against **log** confidence, as the original viewer does with ``conf_<i>.npy`` (which stores
  log(conf)); ``--conf_thre 0.1`` keeps pixels with conf > e^0.1.
* All frames are shown (the original dropped the last one); poses are re-expressed relative to the middle
  frame (``recenter=True``) like the original, so the scene is centred in the view.
* Any finite scene is shown, whatever its units (deliberate difference from the original, whose viewer drew
  nothing once a coordinate exceeded 65504, the float16 range viser used for point clouds):
  - point clouds are sent as float32 (``precision="float32"``, twice the bytes of the original's float16);
  - the scene is brought to a unit-ish scale by one global similarity (after the middle-frame recentring):
    every point AND every camera position is divided by the same factor ``s`` (rotations unchanged), see
    :func:`scene_scale`. ``s`` = 1 for ordinary results (typical size between 0.01 and 100 result units), so
    those look exactly as before; otherwise ``s`` is the typical size, so the default point and camera sizes fit.
    The factor is logged and shown read-only in the GUI ("Scene scale"); ``--scene_scale`` forces it;
  - points with a non-finite coordinate are dropped, with one warning line counting them.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, List, Optional, Tuple, Union

import numpy as np

from monst3r.errors import Monst3rInputError
from monst3r.result import Reconstruction

logger = logging.getLogger("monst3r.viewer")


def show_viewer_log() -> None:
    """The viewer scripts print this module's notes and warnings (one line each, on stderr)."""
    import sys

    if not any(getattr(h, "_monst3r_viewer", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler._monst3r_viewer = True
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


#: typical scene sizes (result units) inside this range are shown unscaled (``scene_scale('auto')`` = 1)
UNSCALED_RANGE = (1e-2, 1e2)
#: points further than this from the origin after scaling are treated as non-finite (float32 is ~3.4e38)
MAX_ABS_COORD = 1e30


@dataclass
class FramePoints:
    """Points of one frame: dynamic ``[M, 3]`` + colours ``[M, 3]`` uint8, static ``[S, 3]`` + colours."""

    dyn_xyz: np.ndarray
    dyn_rgb: np.ndarray
    static_xyz: np.ndarray
    static_rgb: np.ndarray
    n_nonfinite: int = 0  # pixels with a positive or non-finite depth whose world point was not finite (dropped)


def _log_conf(c: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.log(np.clip(c, 0, None))


def recentered_poses(poses: np.ndarray, recenter: bool = True) -> np.ndarray:
    """``[N,4,4]`` cam2world -> ``T_mid^-1 @ T_i`` (middle frame at the origin) when ``recenter``."""
    if not recenter or len(poses) == 0:
        return poses.astype(np.float64)
    mid = np.linalg.inv(poses[len(poses) // 2].astype(np.float64))
    return mid[None] @ poses.astype(np.float64)


def frame_points(res: Reconstruction, k: int, poses: np.ndarray, conf_thre: float = 0.1, fg_conf_thre: float = 0.0,
                 use_init_conf: bool = False, no_mask: bool = False, downsample: int = 1,
                 bg_downsample: int = 1, rng: Optional[np.random.Generator] = None, scale: float = 1.0
                 ) -> FramePoints:
    """Split frame ``k`` into dynamic and static world points (see module docstring for thresholds).

    ``poses`` ``[N, 4, 4]`` cam2world in result units; the returned points are divided by ``scale`` (the
    viewer's global similarity, :func:`scene_scale`). Non-finite points are dropped and counted.
    """
    s = max(1, int(downsample))
    depth = np.asarray(res.depths[k], np.float64)[::s, ::s]
    H, W = depth.shape
    K = res.intrinsics[k].astype(np.float64)
    v, u = np.mgrid[0:H, 0:W].astype(np.float64) * s
    x = (u - K[0, 2]) / K[0, 0] * depth
    y = (v - K[1, 2]) / K[1, 1] * depth
    cam = np.stack([x, y, depth], -1).reshape(-1, 3)
    with np.errstate(invalid="ignore", over="ignore"):
        world = (cam @ poses[k][:3, :3].T + poses[k][:3, 3]) / float(scale)
    rgb = np.nan_to_num(np.clip(np.asarray(res.rgb[k])[::s, ::s], 0, 1))
    rgb = (rgb * 255).astype(np.uint8).reshape(-1, 3)
    conf = _log_conf(np.asarray(res.confs[k])[::s, ::s]).reshape(-1)
    fg_conf = _log_conf(np.asarray(res.init_confs[k] if (use_init_conf or no_mask) else res.confs[k])[::s, ::s])
    fg_conf = fg_conf.reshape(-1)
    if no_mask:
        dyn = fg_conf > fg_conf_thre
        static = np.zeros_like(dyn)
    else:
        mask = np.asarray(res.dynamic_masks[k])[::s, ::s].reshape(-1).astype(bool)
        dyn = mask & (fg_conf > fg_conf_thre)
        static = ~mask & (conf > conf_thre)
    finite = np.isfinite(world).all(-1) & (np.abs(world) < MAX_ABS_COORD).all(-1)
    n_nonfinite = int((~finite & ~(depth.reshape(-1) <= 0)).sum())  # NaN depth counts; depth <= 0 is "no point"
    finite &= depth.reshape(-1) > 0
    dyn &= finite
    static &= finite
    if bg_downsample > 1:
        rng = rng or np.random.default_rng(0)
        static &= rng.random(static.shape) < 1.0 / bg_downsample
    return FramePoints(world[dyn].astype(np.float32), rgb[dyn], world[static].astype(np.float32), rgb[static],
                       n_nonfinite)


def viridis(t: float) -> Tuple[int, int, int]:
    """Viridis colour at ``t`` in [0, 1] as uint8 RGB (matplotlib when available, else a 5-stop table)."""
    try:
        from matplotlib import colormaps

        r, g, b, _ = colormaps["viridis"](float(t))
        return int(r * 255), int(g * 255), int(b * 255)
    except ImportError:
        stops = np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], np.float64)
        x = np.clip(t, 0, 1) * (len(stops) - 1)
        i = min(int(x), len(stops) - 2)
        c = stops[i] + (stops[i + 1] - stops[i]) * (x - i)
        return tuple(int(v) for v in c)


_HINT = "pass --data the folder demo.py wrote (<output_dir>/<seq_name>, holding pred_traj.txt and frame_*.npy)"


def load_any(folder) -> Reconstruction:
    """Read and check a result folder written by us or by the original (``monst3r.io.load_result``).

    Every problem with the folder (missing, a file, no result, malformed ``pred_traj.txt``, unreadable or
    wrong-shaped ``.npy`` files, missing frames, non-finite or invalid poses/intrinsics) raises
    :class:`Monst3rInputError` with a one-line message, so the viewer scripts print ``error: ...`` and exit 2.
    Non-finite depth values are not an error: those points are dropped when the scene is built.
    """
    folder = Path(folder)
    if not folder.exists():
        raise Monst3rInputError(f"{folder} does not exist: {_HINT}")
    if not folder.is_dir():
        raise Monst3rInputError(f"{folder} is a file, not a result folder: {_HINT}")
    import warnings

    from monst3r.io import load_result  # imports torch: after the cheap checks

    try:
        with warnings.catch_warnings(record=True) as caught:  # e.g. numpy's "loadtxt: input contained no data"
            warnings.simplefilter("always")
            res = load_result(folder)
    except Monst3rInputError as exc:
        raise Monst3rInputError(f"{_one_line(exc)}; {_HINT}") from None
    except Exception as exc:  # load_result names the bad file itself; anything else still becomes one line
        raise Monst3rInputError(f"cannot read the result folder {folder}: {type(exc).__name__}: "
                                f"{_one_line(exc)} (re-run demo.py to rewrite it)") from None
    for text in dict.fromkeys(_one_line(w.message) for w in caught):  # each distinct one once
        logger.warning("warning: %s", text)
    check_result(res, folder)
    return res


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 300 else text[:297] + "..."


def _frames_text(idx) -> str:
    idx = [int(i) for i in idx]
    return ", ".join(map(str, idx[:10])) + (f" ... ({len(idx)} frames)" if len(idx) > 10 else "")


def check_result(res: Reconstruction, folder="the result") -> None:
    """Raise :class:`Monst3rInputError` when ``res`` cannot be drawn: no frames, non-finite poses, rotations that
    are not rotations (e.g. from all-zero quaternions), non-finite intrinsics or non-positive focal lengths,
    depth maps that are not ``[H, W]``."""
    n = res.n_frames
    if n == 0:
        raise Monst3rInputError(f"{folder}: no frames (pred_traj.txt has no poses); {_HINT}")
    poses = np.asarray(res.poses, np.float64)
    bad = np.flatnonzero(~np.isfinite(poses).all((1, 2)))
    if len(bad):
        raise Monst3rInputError(f"{folder}: pred_traj.txt has non-finite poses at frames {_frames_text(bad)}; "
                                f"re-run demo.py (the optimisation diverged or the file was damaged)")
    R = poses[:, :3, :3]
    err = np.abs(R.transpose(0, 2, 1) @ R - np.eye(3)).max((1, 2))
    bad = np.flatnonzero((err > 1e-3) | (np.linalg.det(R) < 0))
    if len(bad):
        raise Monst3rInputError(f"{folder}: pred_traj.txt has invalid rotations (e.g. zero quaternions) at frames "
                                f"{_frames_text(bad)}; re-run demo.py to rewrite it")
    K = np.asarray(res.intrinsics, np.float64)
    bad = np.flatnonzero(~np.isfinite(K).all((1, 2)) | (K[:, 0, 0] <= 0) | (K[:, 1, 1] <= 0))
    if len(bad):
        raise Monst3rInputError(f"{folder}: invalid intrinsics (non-finite or focal <= 0) at frames "
                                f"{_frames_text(bad)}; re-run demo.py to rewrite pred_intrinsics.txt")
    bad = [k for k in range(n) if np.ndim(res.depths[k]) != 2 or min(np.shape(res.depths[k])) < 1]
    if bad:
        raise Monst3rInputError(f"{folder}: depth maps frame_<i>.npy must be [H, W] arrays; frames "
                                f"{_frames_text(bad)} are not (shape {np.shape(res.depths[bad[0]])})")


def parse_scene_scale(text: str) -> Union[str, float]:
    """``--scene_scale``: ``"auto"`` or a positive number (else :class:`Monst3rInputError`)."""
    if text == "auto":
        return "auto"
    try:
        value = float(text)
    except (TypeError, ValueError):
        value = float("nan")
    if not (math.isfinite(value) and value > 0):
        raise Monst3rInputError(f"--scene_scale must be 'auto' or a positive number, got {text!r}")
    return value


def scene_scale(res: Reconstruction, poses: np.ndarray, mode: Union[str, float] = "auto", n: Optional[int] = None
                ) -> float:
    """The viewer's global scale factor ``s``: shown coordinates = result coordinates (after recentring) / ``s``.

    ``mode`` ``"auto"``: the typical size ``m`` = max(median finite positive depth, median camera distance from
    the origin), over the first ``n`` frames (depths subsampled); ``s`` = 1 when ``m`` lies in
    :data:`UNSCALED_RANGE` (ordinary results: unchanged, as the original), else ``s`` = ``m`` rounded to a power
    of ten, so a scene in arbitrary units shows at a unit-ish size. A number forces ``s`` (1 = result units).
    """
    if mode != "auto":
        s = float(mode)
        if not (math.isfinite(s) and s > 0):
            raise Monst3rInputError(f"--scene_scale must be 'auto' or a positive number, got {mode!r}")
        return s
    n = res.n_frames if n is None else n
    samples = []
    for k in range(n):
        d = np.asarray(res.depths[k])
        step = max(1, int(math.sqrt(d.size / 4096)))
        d = d[::step, ::step].reshape(-1)
        samples.append(d[np.isfinite(d) & (d > 0)])
    d = np.concatenate(samples) if samples else np.zeros(0)
    typical = float(np.median(d)) if d.size else 0.0
    cams = np.linalg.norm(poses[:n, :3, 3], axis=-1)
    cams = cams[np.isfinite(cams)]
    if cams.size:
        typical = max(typical, float(np.median(cams)))
    if not math.isfinite(typical) or typical <= 0 or UNSCALED_RANGE[0] <= typical <= UNSCALED_RANGE[1]:
        return 1.0
    return float(10.0 ** round(math.log10(typical)))


def build_scene(server, res: Reconstruction, *, conf_thre: float = 0.1, fg_conf_thre: float = 0.0,
                use_init_conf: bool = False, no_mask: bool = False, point_size: float = 0.001,
                camera_size: float = 0.015, cam_thickness: float = 1.5, axes_scale: float = 0.1,
                downsample: int = 1, bg_downsample: int = 1, max_frames: Optional[int] = None,
                recenter: bool = True, scale: Union[str, float] = "auto"):
    """Add the per-frame nodes to a ``viser.ViserServer``; returns ``(frame_nodes, background_handle)``.

    Scene: ``/frames`` (rotated so that camera -y is up), per frame ``/frames/t<i>`` with its dynamic cloud,
    frustum (frame image, viridis colour by time) and axes; one ``/frames/background`` cloud with the static
    points of all frames. Coordinates are divided by :func:`scene_scale` (``scale``), points and camera positions
    alike, and sent as float32; the factor is shown in a read-only "Scene scale" GUI field and stored as
    ``server.monst3r_scene_scale``. Non-finite points are dropped with one warning line.
    """
    import roma
    import torch

    n = res.n_frames if max_frames is None else min(res.n_frames, max_frames)
    poses = recentered_poses(res.poses[:n], recenter)
    s = scene_scale(res, poses, scale, n)
    if s != 1.0:
        logger.info("note: coordinates divided by %g (typical scene size outside %g..%g result units; "
                       "--scene_scale 1 keeps them)", s, *UNSCALED_RANGE)
    server.monst3r_scene_scale = s
    server.scene.set_up_direction("-y")
    nodes, statics, static_rgb = [], [], []
    dropped, dropped_frames = 0, 0
    for k in range(n):
        pts = frame_points(res, k, poses, conf_thre, fg_conf_thre, use_init_conf, no_mask, downsample, bg_downsample,
                           scale=s)
        dropped += pts.n_nonfinite
        dropped_frames += pts.n_nonfinite > 0
        node = server.scene.add_frame(f"/frames/t{k}", show_axes=False)
        nodes.append(node)
        server.scene.add_point_cloud(f"/frames/t{k}/points", points=pts.dyn_xyz, colors=pts.dyn_rgb,
                                     point_size=point_size, point_shape="rounded", precision="float32")
        H, W = res.frame_shape(k)
        fy = float(res.intrinsics[k][1, 1])
        R, t = poses[k][:3, :3], poses[k][:3, 3] / s

        wxyz = roma.quat_xyzw_to_wxyz(roma.rotmat_to_unitquat(torch.as_tensor(R))).numpy()
        img = (np.nan_to_num(np.clip(np.asarray(res.rgb[k]), 0, 1)) * 255).astype(np.uint8)
        server.scene.add_camera_frustum(f"/frames/t{k}/frustum", fov=float(2 * np.arctan2(H / 2, fy)),
                                        aspect=W / H, scale=camera_size, image=img[::4, ::4], wxyz=wxyz,
                                        position=t, color=viridis(k / max(n - 1, 1)),
                                        thickness=cam_thickness, thickness_units="screen")
        server.scene.add_frame(f"/frames/t{k}/frustum/axes", axes_length=axes_scale * camera_size * 10,
                               axes_radius=axes_scale * camera_size)
        statics.append(pts.static_xyz)
        static_rgb.append(pts.static_rgb)
    if dropped:
        logger.warning("warning: dropped %d points with non-finite coordinates in %d of %d frames", dropped,
                       dropped_frames, n)
    _set_initial_view(server, res, poses, n, s)
    bg = server.scene.add_point_cloud("/frames/background", points=np.concatenate(statics) if statics else
                                      np.zeros((0, 3), np.float32),
                                      colors=np.concatenate(static_rgb) if static_rgb else np.zeros((0, 3), np.uint8),
                                      point_size=point_size, point_shape="rounded", precision="float32")
    with server.gui.add_folder("Scene"):
        server.gui.add_text("Scene scale", initial_value=f"1 unit = {s:g} result units", disabled=True,
                            hint="shown coordinates = result coordinates (middle frame at the origin) / this factor")
    return nodes, bg


def _set_initial_view(server, res: Reconstruction, poses: np.ndarray, n: int, scale: float = 1.0) -> None:
    """New browser clients start behind and above the middle camera, looking at the scene in front of it
    (in the shown coordinates: result coordinates / ``scale``)."""
    if n == 0:
        return
    k = n // 2
    depth = np.asarray(res.depths[k], np.float64)
    good = depth[np.isfinite(depth) & (depth > 0)]
    d = float(np.median(good)) / scale if good.size else 1.0
    d = d if np.isfinite(d) and d > 0 else 1.0
    c2w = poses[k]
    eye = c2w[:3, :3] @ np.array([0.0, -0.35 * d, -0.9 * d]) + c2w[:3, 3] / scale
    target = c2w[:3, :3] @ np.array([0.0, 0.0, 0.8 * d]) + c2w[:3, 3] / scale
    up = -c2w[:3, 1]

    @server.on_client_connect
    def _(client):
        client.camera.up_direction = tuple(float(v) for v in up)
        client.camera.position = tuple(float(v) for v in eye)
        client.camera.look_at = tuple(float(v) for v in target)


def add_playback_gui(server, nodes: List, fps: float = 30.0):
    """Timeline GUI: timestep slider, next/prev, play/pause, FPS, show-all-with-stride. Returns a ``step()``
    callable that the main loop calls to advance playback (so tests can drive it without sleeping)."""
    n = len(nodes)
    with server.gui.add_folder("Playback"):
        timestep = server.gui.add_slider("Timestep", min=0, max=max(n - 1, 0), step=1, initial_value=0)
        nxt = server.gui.add_button("Next Frame", disabled=True)
        prv = server.gui.add_button("Prev Frame", disabled=True)
        playing = server.gui.add_checkbox("Playing", True)
        fps_slider = server.gui.add_slider("FPS", min=1, max=60, step=1, initial_value=int(fps))
        show_all = server.gui.add_checkbox("Show all frames", False)
        stride = server.gui.add_slider("Stride", min=1, max=max(n, 1), step=1, initial_value=max(1, n // 10))

    def refresh():
        for i, node in enumerate(nodes):
            node.visible = (i % int(stride.value) == 0) if show_all.value else (i == int(timestep.value))

    @nxt.on_click
    def _(_):
        timestep.value = (int(timestep.value) + 1) % max(n, 1)

    @prv.on_click
    def _(_):
        timestep.value = (int(timestep.value) - 1) % max(n, 1)

    @playing.on_update
    def _(_):
        nxt.disabled = prv.disabled = playing.value

    for handle in (timestep, show_all, stride):
        handle.on_update(lambda _: refresh())
    refresh()

    def step() -> float:
        """Advance one frame when playing; returns the seconds to wait before the next call."""
        if playing.value and not show_all.value and n:
            timestep.value = (int(timestep.value) + 1) % n
        return 1.0 / max(float(fps_slider.value), 1.0)

    return step, timestep


def serve(server, step, exit_after_build: bool = False) -> int:
    """Run the playback loop until Ctrl-C (or return at once with ``exit_after_build``); stops the server."""
    import time

    try:
        while not exit_after_build:
            time.sleep(step())
    except KeyboardInterrupt:
        pass
    server.stop()
    return 0


def run_viewer(load: Callable[[], Any], build: Callable[[Any, Any], Tuple[List, str]], *, host: str, port: int,
               fps: float, exit_after_build: bool = False, source="the folder") -> int:
    """The main of the viewer scripts (``viser/*.py``); returns the exit status.

    ``load()`` reads the data before viser is imported (a bad folder fails fast); ``build(server, data)`` adds the
    scene to the started server and returns ``(per-frame nodes, note)``; the playback controls are added and the
    loop runs (:func:`serve`). A :class:`Monst3rInputError` of either step, or viser missing, is one ``error:``
    line on stderr and exit status 2; ``viewer: <n> frames from <source> at <url> (<note>)`` on stdout otherwise.
    """
    from monst3r.utils.cli_errors import error_exit

    show_viewer_log()
    try:
        data = load()
    except Monst3rInputError as exc:
        return error_exit(exc)
    try:
        import viser
    except ImportError:
        return error_exit("the viewer needs the 'viser' package: pip install -r requirements.txt")
    server = viser.ViserServer(host=host, port=port, verbose=False)
    try:
        nodes, note = build(server, data)
    except Monst3rInputError as exc:
        server.stop()
        return error_exit(exc)
    step, _ = add_playback_gui(server, nodes, fps=fps)
    print(f"viewer: {len(nodes)} frames from {source} at http://{host}:{server.get_port()} ({note})", flush=True)
    return serve(server, step, exit_after_build)
