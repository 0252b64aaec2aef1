"""Point extraction and scene building for the 4D browser viewer (``viser/visualizer_monst3r.py``).

Kept separate from the script so it can be tested without a browser. Everything reads a
:class:`monst3r.result.Reconstruction` (in memory or via :func:`monst3r.io.load_result`).

Conventions (documented choices, spec cli.md 6.3):
* Pixel centres are at integer coordinates, as everywhere else in MonST3R (the original viewer used +0.5).
* Thresholds compare against **log** confidence, as the original viewer does with ``conf_<i>.npy`` (which stores
  log(conf)); ``--conf_thre 0.1`` keeps pixels with conf > e^0.1.
* All frames are shown (the original dropped the last one); poses are re-expressed relative to the middle
  frame (``recenter=True``) like the original, so the scene is centred in the view.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np

from monst3r.result import Reconstruction


@dataclass
class FramePoints:
    """Points of one frame: dynamic ``[M, 3]`` + colours ``[M, 3]`` uint8, static ``[S, 3]`` + colours."""

    dyn_xyz: np.ndarray
    dyn_rgb: np.ndarray
    static_xyz: np.ndarray
    static_rgb: np.ndarray


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
                 bg_downsample: int = 1, rng: Optional[np.random.Generator] = None) -> FramePoints:
    """Split frame ``k`` into dynamic and static world points (see module docstring for thresholds)."""
    s = max(1, int(downsample))
    depth = np.asarray(res.depths[k], np.float64)[::s, ::s]
    H, W = depth.shape
    K = res.intrinsics[k].astype(np.float64)
    v, u = np.mgrid[0:H, 0:W].astype(np.float64) * s
    x = (u - K[0, 2]) / K[0, 0] * depth
    y = (v - K[1, 2]) / K[1, 1] * depth
    cam = np.stack([x, y, depth], -1).reshape(-1, 3)
    world = cam @ poses[k][:3, :3].T + poses[k][:3, 3]
    rgb = (np.clip(np.asarray(res.rgb[k])[::s, ::s], 0, 1) * 255).astype(np.uint8).reshape(-1, 3)
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
    finite = np.isfinite(world).all(-1) & (depth.reshape(-1) > 0)
    dyn &= finite
    static &= finite
    if bg_downsample > 1:
        rng = rng or np.random.default_rng(0)
        static &= rng.random(static.shape) < 1.0 / bg_downsample
    return FramePoints(world[dyn].astype(np.float32), rgb[dyn], world[static].astype(np.float32), rgb[static])


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


def load_any(folder) -> Reconstruction:
    """Read a result folder written by us or by the original (``monst3r.io.load_result``)."""
    from monst3r.io import load_result

    return load_result(folder)


def build_scene(server, res: Reconstruction, *, conf_thre: float = 0.1, fg_conf_thre: float = 0.0,
                use_init_conf: bool = False, no_mask: bool = False, point_size: float = 0.001,
                camera_size: float = 0.015, cam_thickness: float = 1.5, axes_scale: float = 0.1,
                downsample: int = 1, bg_downsample: int = 1, max_frames: Optional[int] = None,
                recenter: bool = True):
    """Add the per-frame nodes to a ``viser.ViserServer``; returns ``(frame_nodes, background_handle)``.

    Scene: ``/frames`` (rotated so that camera -y is up), per frame ``/frames/t<i>`` with its dynamic cloud,
    frustum (frame image, viridis colour by time) and axes; one ``/frames/background`` cloud with the static
    points of all frames.
    """
    n = res.n_frames if max_frames is None else min(res.n_frames, max_frames)
    poses = recentered_poses(res.poses[:n], recenter)
    server.scene.set_up_direction("-y")
    nodes, statics, static_rgb = [], [], []
    for k in range(n):
        pts = frame_points(res, k, poses, conf_thre, fg_conf_thre, use_init_conf, no_mask, downsample, bg_downsample)
        node = server.scene.add_frame(f"/frames/t{k}", show_axes=False)
        nodes.append(node)
        server.scene.add_point_cloud(f"/frames/t{k}/points", points=pts.dyn_xyz, colors=pts.dyn_rgb,
                                     point_size=point_size, point_shape="rounded")
        H, W = res.frame_shape(k)
        fy = float(res.intrinsics[k][1, 1])
        R, t = poses[k][:3, :3], poses[k][:3, 3]
        import roma
        import torch

        wxyz = roma.quat_xyzw_to_wxyz(roma.rotmat_to_unitquat(torch.as_tensor(R))).numpy()
        img = (np.clip(np.asarray(res.rgb[k]), 0, 1) * 255).astype(np.uint8)
        server.scene.add_camera_frustum(f"/frames/t{k}/frustum", fov=float(2 * np.arctan2(H / 2, fy)),
                                        aspect=W / H, scale=camera_size, image=img[::4, ::4], wxyz=wxyz,
                                        position=t, color=viridis(k / max(n - 1, 1)),
                                        thickness=cam_thickness, thickness_units="screen")
        server.scene.add_frame(f"/frames/t{k}/frustum/axes", axes_length=axes_scale * camera_size * 10,
                               axes_radius=axes_scale * camera_size)
        statics.append(pts.static_xyz)
        static_rgb.append(pts.static_rgb)
    _set_initial_view(server, res, poses, n)
    bg = server.scene.add_point_cloud("/frames/background", points=np.concatenate(statics) if statics else
                                      np.zeros((0, 3), np.float32),
                                      colors=np.concatenate(static_rgb) if static_rgb else np.zeros((0, 3), np.uint8),
                                      point_size=point_size, point_shape="rounded")
    return nodes, bg


def _set_initial_view(server, res: Reconstruction, poses: np.ndarray, n: int) -> None:
    """New browser clients start behind and above the middle camera, looking at the scene in front of it."""
    if n == 0:
        return
    k = n // 2
    d = float(np.nanmedian(np.asarray(res.depths[k]))) if np.isfinite(np.asarray(res.depths[k])).any() else 1.0
    d = d if np.isfinite(d) and d > 0 else 1.0
    c2w = poses[k]
    eye = c2w[:3, :3] @ np.array([0.0, -0.35 * d, -0.9 * d]) + c2w[:3, 3]
    target = c2w[:3, :3] @ np.array([0.0, 0.0, 0.8 * d]) + c2w[:3, 3]
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
