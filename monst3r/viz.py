"""``scene.glb`` export with trimesh (cli.md 4.5, optimizer.md 12.1), from a :class:`~monst3r.result.Reconstruction`.

Content: the coloured point cloud (or a mesh over the pixel grid) of every frame's confident pixels plus one
frustum per camera (viridis colours by index, optionally textured with the frame), the whole scene expressed in
the first camera's frame with OpenGL axes (transform inverse(c2w_0 @ diag(1, -1, -1, 1) @ Rot_y(180 deg))).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from monst3r.result import Reconstruction

OPENGL = np.diag([1.0, -1.0, -1.0, 1.0])


def _rot_y(deg: float) -> np.ndarray:
    a = np.deg2rad(deg)
    out = np.eye(4)
    out[0, 0], out[0, 2], out[2, 0], out[2, 2] = np.cos(a), np.sin(a), -np.sin(a), np.cos(a)
    return out


def _camera_frustum(c2w: np.ndarray, focal: float, H: int, W: int, color, screen_width: float, image=None):
    """Pyramid (apex = camera centre) whose base is the image plane scaled to ``screen_width``; optional image
    quad on the base. Returns a list of trimesh geometries in world coordinates."""
    import trimesh
    depth = screen_width * focal / max(W, 1)
    hw, hh = screen_width / 2, screen_width * H / max(W, 1) / 2
    corners_cam = np.array([[-hw, -hh, depth], [hw, -hh, depth], [hw, hh, depth], [-hw, hh, depth]])
    apex = np.zeros((1, 3))
    verts_cam = np.concatenate((apex, corners_cam))
    verts = verts_cam @ c2w[:3, :3].T + c2w[:3, 3]
    faces = np.array([[0, 1, 2], [0, 2, 3], [0, 3, 4], [0, 4, 1]])
    faces = np.concatenate((faces, faces[:, ::-1]))  # two-sided
    cone = trimesh.Trimesh(vertices=verts, faces=faces, process=False)
    cone.visual.face_colors = np.tile(np.append(np.asarray(color, np.uint8)[:3], 255), (len(faces), 1))
    out = [cone]
    if image is not None:
        import PIL.Image
        quad = trimesh.Trimesh(vertices=verts[1:], faces=np.array([[0, 1, 2], [0, 2, 3]]), process=False)
        uv = np.array([[0, 1], [1, 1], [1, 0], [0, 0]], dtype=np.float64)
        tex = PIL.Image.fromarray(np.clip(np.rint(np.asarray(image) * 255), 0, 255).astype(np.uint8))
        quad.visual = trimesh.visual.TextureVisuals(uv=uv, image=tex)
        out.append(quad)
    return out


def _grid_mesh(pts: np.ndarray, colors: np.ndarray, mask: np.ndarray):
    """Triangles between neighbouring valid pixels of one frame (pts ``[H, W, 3]``)."""
    import trimesh
    H, W = mask.shape
    idx = np.arange(H * W).reshape(H, W)
    a, b, c, d = idx[:-1, :-1], idx[:-1, 1:], idx[1:, :-1], idx[1:, 1:]
    m = mask.reshape(-1)
    tri1 = np.stack((a, c, b), -1).reshape(-1, 3)
    tri2 = np.stack((b, c, d), -1).reshape(-1, 3)
    faces = np.concatenate((tri1, tri2))
    faces = faces[m[faces].all(axis=1)]
    return trimesh.Trimesh(vertices=pts.reshape(-1, 3), faces=faces, vertex_colors=colors.reshape(-1, 3),
                           process=False)


def export_glb(result: Reconstruction, path, min_conf_thr: float = 1.1, use_init_conf: bool = True,
               as_pointcloud: bool = True, cam_size: float = 0.05, show_cam: bool = True,
               transparent_cams: bool = False) -> Path:
    """Write the scene of ``result`` to ``path`` (.glb) and return the path.

    Points: pixels whose (initial, with ``use_init_conf``) raw confidence exceeds ``min_conf_thr`` (the demo's
    export: 1.1 on the initial confidences). ``as_pointcloud=False`` builds a mesh per frame instead.
    """
    import matplotlib
    import trimesh
    path = Path(path)
    scene = trimesh.Scene()
    masks = result.masks(min_conf_thr, use_init_conf)
    pts = [result.pts3d(k) for k in range(result.n_frames)]
    if as_pointcloud:
        P = np.concatenate([p[np.asarray(m)] for p, m in zip(pts, masks)]).reshape(-1, 3)
        C = np.concatenate([np.asarray(r)[np.asarray(m)] for r, m in zip(result.rgb, masks)]).reshape(-1, 3)
        if len(P):
            scene.add_geometry(trimesh.PointCloud(P, colors=np.clip(np.rint(C * 255), 0, 255).astype(np.uint8)))
    else:
        for p, r, m in zip(pts, result.rgb, masks):
            scene.add_geometry(_grid_mesh(p, np.clip(np.rint(np.asarray(r) * 255), 0, 255).astype(np.uint8),
                                          np.asarray(m)))
    if show_cam:
        cmap = matplotlib.colormaps["viridis"]
        n = result.n_frames
        for k in range(n):
            color = (np.asarray(cmap(k / n))[:3] * 255).astype(np.uint8)
            H, W = result.frame_shape(k)
            for g in _camera_frustum(result.poses[k].astype(np.float64), float(result.focals[k]), H, W, color,
                                     cam_size, image=None if transparent_cams else result.rgb[k]):
                scene.add_geometry(g)
    scene.apply_transform(np.linalg.inv(result.poses[0].astype(np.float64) @ OPENGL @ _rot_y(180)))
    path.parent.mkdir(parents=True, exist_ok=True)
    scene.export(file_obj=str(path))
    return path


# names other modules look for
save_glb = export_glb
convert_result_to_glb = export_glb
