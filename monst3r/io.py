"""The result folder: ``save_result`` / ``load_result`` with the original's file names and formats.

Files (optimizer.md 12.1, cli.md 4.2), N frames:

==============================  ====================================================================
``pred_traj.txt``               N lines ``t x y z qw qx qy qz`` (c2w; t = 0.0, 1.0, ...; Python float repr):
                                the original's layout, quaternion w FIRST (what its evaluation reads)
``pred_traj_tum.txt``           the same poses in standard TUM, ``t tx ty tz qx qy qz qw`` (w LAST, qw >= 0, a
                                ``#`` header): what evo / TUM tools read (ours; absent in the original's folders).
                                Layouts: :mod:`monst3r.trajectory_io`
``pred_intrinsics.txt``         N lines, K row-major, ``%.6f``
``pred_focal.txt``              N lines ``%.6f`` (the evaluation's extra file; optional)
``frame_%04d.npy``              depth ``[H, W]`` float32
``frame_%04d.png``              RGB frame, 8 bit (the original first wrote a depth picture under this name and then
                                overwrote it with the RGB frame: the final content is the RGB frame)
``conf_%d.npy``                 log(confidence) float32 (-inf where ``clean_pointcloud`` removed the point)
``init_conf_%d.npy``            log(initial confidence) float32
``dynamic_mask_%d.png``         uint8 0/255
``enlarged_dynamic_mask_%d.png`` the mask dilated by a k x k box (k = 3, 5 with ground-truth masks)
``_depth_maps.gif``             depth animation (ours: colour-mapped after per-sequence normalisation; the
                                original's ``uint8(depth * 255)`` wrapped around for depth > 1, bug 14.8)
``scene.glb``                   point cloud + cameras (:mod:`monst3r.viz`), optional
``monst3r_meta.json``           our metadata (not read by the original tools; absent in the original's folders)
==============================  ====================================================================

Every writer goes through :func:`monst3r.result_folder.result_folder` (the one write policy: built in a hidden sibling and swapped
in, so an interrupted write never leaves a folder that loads as complete; a re-run replaces the files the previous
run listed in ``.monst3r_manifest.json`` and keeps every other entry). ``load_result`` also reads folders written by the original (-inf
confidences, non-canonical quaternion signs, missing optional files).
"""
from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from monst3r.errors import Monst3rInputError
from monst3r.result import Reconstruction
# the file names and the one write policy live in monst3r.result_folder; re-exported here, where callers import them
from monst3r.result_folder import (  # noqa: F401
    CONF_PATTERN, DEPTH_PATTERN, ENLARGED_MASK_PATTERN, EXTRA_FILES, FOCAL_FILE, GIF_FILE, GLB_FILE,
    INIT_CONF_PATTERN, INTRINSICS_FILE, MANIFEST_FILE, MASK_PATTERN, META_FILE, RESULT_LEGACY, RGB_PATTERN,
    TRAJ_FILE, TRAJ_TUM_FILE, LegacyLayout, atomic_file, atomic_folder, check_result_target, discard_result,
    recover_stale, result_folder)
from monst3r.trajectory_io import format_trajectory, read_trajectory, write_trajectory

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------------------
# single-file writers (also used by the scene's save_* methods)
# ----------------------------------------------------------------------------------------------------------
def format_tum_lines(poses: np.ndarray, timestamps: Sequence[float] | None = None) -> str:
    """Text of ``pred_traj.txt``: per pose ``t x y z qw qx qy qz`` (w-first) with Python's shortest float repr."""
    return format_trajectory(poses, "pred_traj", timestamps)


def write_tum_poses(poses: np.ndarray, path) -> None:
    """``pred_traj.txt`` (the original's w-first layout) from c2w poses ``[N, 4, 4]``."""
    Path(path).write_text(format_tum_lines(poses))


def read_tum_poses(path) -> tuple[np.ndarray, np.ndarray]:
    """(c2w ``[N, 4, 4]`` float64, timestamps ``[N]``) from a ``pred_traj.txt`` (w-first layout; q and -q give
    the same matrix). A standard (w-last) TUM file is read with ``read_trajectory(path, "tum")``."""
    return read_trajectory(path, "pred_traj")


def write_intrinsics(K: np.ndarray, path) -> None:
    """``pred_intrinsics.txt``: N lines of 9 numbers ``%.6f``."""
    K = np.asarray(K, dtype=np.float32)
    np.savetxt(path, K.reshape(len(K), 9), fmt="%.6f")


def write_focals(focals: np.ndarray, path) -> None:
    """``pred_focal.txt``: N lines ``%.6f``."""
    np.savetxt(path, np.asarray(focals, dtype=np.float32).reshape(-1), fmt="%.6f")


def write_depth_maps(depths, folder) -> None:
    folder = Path(folder)
    for k, d in enumerate(depths):
        np.save(folder / DEPTH_PATTERN.format(k), np.asarray(d, dtype=np.float32))


def _to_uint8(rgb: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(np.asarray(rgb, dtype=np.float32) * 255), 0, 255).astype(np.uint8)


def write_rgb(rgb, folder) -> None:
    """``frame_%04d.png`` (8-bit RGB; OpenCV writes BGR, so the channels are swapped before writing)."""
    folder = Path(folder)
    for k, im in enumerate(rgb):
        cv2.imwrite(str(folder / RGB_PATTERN.format(k)), _to_uint8(im)[..., ::-1])


def write_conf_maps(confs, folder, pattern: str = CONF_PATTERN) -> None:
    """``conf_%d.npy`` / ``init_conf_%d.npy`` = log of the raw confidences (float32; 0 -> -inf)."""
    folder = Path(folder)
    with np.errstate(divide="ignore"):
        for k, c in enumerate(confs):
            np.save(folder / pattern.format(k), np.log(np.asarray(c, dtype=np.float32)))


def write_dynamic_masks(masks, folder, enlarge_kernel: int | None = None) -> None:
    """``dynamic_mask_%d.png`` (0/255) and, with ``enlarge_kernel``, ``enlarged_dynamic_mask_%d.png``."""
    folder = Path(folder)
    for k, m in enumerate(masks):
        img = np.asarray(m, dtype=bool).astype(np.uint8) * 255
        cv2.imwrite(str(folder / MASK_PATTERN.format(k)), img)
        if enlarge_kernel:
            cv2.imwrite(str(folder / ENLARGED_MASK_PATTERN.format(k)), enlarge_mask(img, enlarge_kernel))


def enlarge_mask(mask: np.ndarray, kernel_size: int = 3) -> np.ndarray:
    """Dilation of a 0/255 (or bool) mask by a ``kernel_size`` box, one iteration (uint8 0/255)."""
    m = np.asarray(mask)
    m = (m > 0).astype(np.uint8) * 255
    return cv2.dilate(m, np.ones((kernel_size, kernel_size), np.uint8), iterations=1)


def enlarge_seg_masks(folder, kernel_size: int = 3, prefix: str = "dynamic_mask") -> None:
    """The original's post-step: ``enlarged_<name>`` for every ``<prefix>_*.png`` in ``folder``."""
    folder = Path(folder)
    for p in sorted(folder.glob(f"{prefix}_*.png")):
        cv2.imwrite(str(folder / f"enlarged_{p.name}"), enlarge_mask(cv2.imread(str(p), cv2.IMREAD_GRAYSCALE),
                                                                     kernel_size))


def write_depth_gif(depths, path, duration_ms: int = 100) -> None:
    """Colour-mapped depth animation, normalised by the sequence's 1st-99th percentiles (frames of one size)."""
    import imageio.v2 as imageio
    arrs = [np.asarray(d, dtype=np.float32) for d in depths]
    if len({a.shape for a in arrs}) != 1:
        log.info("frames of different sizes: no depth gif")
        return
    stack = np.stack(arrs)
    finite = stack[np.isfinite(stack)]
    lo, hi = (np.percentile(finite, 1), np.percentile(finite, 99)) if finite.size else (0.0, 1.0)
    frames = []
    for d in arrs:
        norm = np.clip((d - lo) / max(hi - lo, 1e-12), 0, 1)
        colored = cv2.applyColorMap((norm * 255).astype(np.uint8), cv2.COLORMAP_JET)[..., ::-1]
        frames.append(colored)
    imageio.mimsave(str(path), frames, duration=duration_ms, loop=0)



def write_result_files(result: Reconstruction, folder, *, glb: bool = True, depth_gif: bool = True,
                       focal_file: bool = False, enlarge_kernel: int = 3, min_conf_thr: float = 1.1,
                       glb_kwargs: dict | None = None, mask_source: str = "used") -> Path:
    """The files of the module docstring, written straight into ``folder`` (use inside :func:`result_folder`;
    options as :func:`save_result`)."""
    if not isinstance(result, Reconstruction):
        raise TypeError(f"save_result needs a Reconstruction, got {type(result).__name__} (use scene.result())")
    tmp = Path(folder)
    tmp.mkdir(parents=True, exist_ok=True)
    write_tum_poses(result.poses, tmp / TRAJ_FILE)
    write_trajectory(tmp / TRAJ_TUM_FILE, result.poses, "tum")
    write_intrinsics(result.intrinsics, tmp / INTRINSICS_FILE)
    if focal_file:
        write_focals(result.focals, tmp / FOCAL_FILE)
    write_depth_maps(result.depths, tmp)
    write_rgb(result.rgb, tmp)
    masks = result.sam2_masks if (mask_source == "sam2_only" and result.sam2_masks is not None) \
        else result.dynamic_masks
    write_dynamic_masks(masks, tmp, enlarge_kernel=enlarge_kernel or None)
    write_conf_maps(result.confs, tmp, CONF_PATTERN)
    write_conf_maps(result.init_confs, tmp, INIT_CONF_PATTERN)
    if depth_gif:
        write_depth_gif(result.depths, tmp / GIF_FILE)
    if glb:
        from monst3r.viz import export_glb
        export_glb(result, tmp / GLB_FILE, **{"min_conf_thr": min_conf_thr, **(glb_kwargs or {})})
    meta = dict(result.meta)
    meta["n_frames"] = result.n_frames
    (tmp / META_FILE).write_text(json.dumps(_jsonable(meta), indent=1))
    return tmp


def save_result(result: Reconstruction, folder, *, glb: bool = True, depth_gif: bool = True,
                focal_file: bool = False, enlarge_kernel: int = 3, min_conf_thr: float = 1.1,
                glb_kwargs: dict | None = None, mask_source: str = "used") -> Path:
    """Write ``result`` into ``folder`` (through :func:`result_folder`: complete or not at all) and return it.

    glb: also write ``scene.glb`` (:func:`monst3r.viz.export_glb` with ``min_conf_thr`` on the initial
    confidences, as the demo; ``glb_kwargs`` passed on); focal_file:
    ``pred_focal.txt`` as the evaluation writes it; enlarge_kernel: size of the box dilation of the
    ``enlarged_dynamic_mask_*`` files (3, or 5 with ground-truth masks; 0 = none);
    mask_source: 'used' (the masks the loss used) or 'sam2_only' (the original wrote SAM2-only masks, bug 14.7).
    Entries of an existing ``folder`` that the previous run did not write are kept (moved, never copied).
    """
    if not isinstance(result, Reconstruction):
        raise TypeError(f"save_result needs a Reconstruction, got {type(result).__name__} (use scene.result())")
    folder = Path(folder)
    with result_folder(folder) as tmp:
        write_result_files(result, tmp, glb=glb, depth_gif=depth_gif, focal_file=focal_file,
                           enlarge_kernel=enlarge_kernel, min_conf_thr=min_conf_thr, glb_kwargs=glb_kwargs,
                           mask_source=mask_source)
    return folder


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, (str, int, float, bool)) or x is None:
        return x
    return str(x)


def _indexed(folder: Path, regex: str) -> dict[int, Path]:
    """Files whose name matches ``regex`` (one integer group), keyed by that integer."""
    rx = re.compile(regex)
    out = {}
    for p in folder.iterdir():
        m = rx.fullmatch(p.name)
        if m:
            out[int(m.group(1))] = p
    return dict(sorted(out.items()))


def _read_rgb(path: Path) -> np.ndarray:
    im = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if im is None:
        raise Monst3rInputError(f"cannot read image {path}")
    return im[..., ::-1].astype(np.float32) / 255


def read_result_poses(folder) -> np.ndarray:
    """Camera-to-world ``[N, 4, 4]`` of a result folder: ``pred_traj.txt`` read as the original's w-first layout,
    or, in a folder without it, ``pred_traj_tum.txt`` read as standard TUM. When both are present they must
    agree (a hand-edited or foreign file in one of them is an error, never silently preferred)."""
    folder = Path(folder)
    wfirst, tum = folder / TRAJ_FILE, folder / TRAJ_TUM_FILE
    if not folder.is_dir():
        raise Monst3rInputError(f"{folder} is not a folder: give a result folder (with {TRAJ_FILE})")
    if not wfirst.is_file() and not tum.is_file():
        raise Monst3rInputError(f"{folder} is not a result folder ({TRAJ_FILE} missing)")
    poses = read_trajectory(wfirst, "pred_traj")[0] if wfirst.is_file() else None
    if tum.is_file():
        poses_tum = read_trajectory(tum, "tum")[0]
        if poses is None:
            return poses_tum
        if poses_tum.shape != poses.shape or not np.allclose(poses_tum, poses, atol=1e-5):
            raise Monst3rInputError(f"{folder}: {TRAJ_FILE} (w-first) and {TRAJ_TUM_FILE} (standard TUM) hold "
                                    f"different poses; delete the one that was not written by MonST3R")
    return poses


def _read_npy(path: Path) -> np.ndarray:
    """A numeric ``.npy`` as float32 (never unpickled); anything else is a one-line error naming the file."""
    try:
        arr = np.load(path, allow_pickle=False)
        if not np.issubdtype(arr.dtype, np.number):
            raise ValueError(f"dtype {arr.dtype}")
    except (OSError, ValueError, EOFError) as exc:
        raise Monst3rInputError(f"{path}: not a numeric .npy array ({' '.join(str(exc).split())[:200]}); "
                                "re-run demo.py to rewrite it") from None
    return arr.astype(np.float32)


def _read_table(path: Path, width: int) -> np.ndarray:
    """Rows of ``width`` numbers (float64 ``[N, width]``); anything else is a one-line error naming the file."""
    import warnings
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # numpy's "input contained no data": reported below instead
            rows = np.loadtxt(path, ndmin=2, dtype=np.float64)
    except (OSError, ValueError) as exc:
        raise Monst3rInputError(f"{path}: not a table of numbers ({' '.join(str(exc).split())[:200]})") from None
    if rows.size == 0 or rows.shape[1] != width:
        raise Monst3rInputError(f"{path}: expected {width} numbers per line, got "
                                f"{rows.shape[1] if rows.size else 'no data'}")
    return rows


def _read_mask(path: Path) -> np.ndarray:
    im = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if im is None:
        raise Monst3rInputError(f"cannot read mask image {path}")
    return im > 0


def load_result(folder) -> Reconstruction:
    """Read a result folder written by :func:`save_result` or by the original MonST3R."""
    folder = Path(folder)
    poses = read_result_poses(folder)
    n = len(poses)
    depth_files = _indexed(folder, r"frame_(\d+)\.npy")
    if len(depth_files) < n:
        raise Monst3rInputError(f"{folder}: {n} poses but {len(depth_files)} depth maps (frame_*.npy)")
    depth_files = dict(list(depth_files.items())[:n])
    depths = [_read_npy(p) for p in depth_files.values()]
    rgb_files = _indexed(folder, r"frame_(\d+)\.png")
    rgb = [_read_rgb(p) for p in list(rgb_files.values())[:n]] if len(rgb_files) >= n else \
        [np.zeros((*d.shape, 3), np.float32) for d in depths]
    if (folder / INTRINSICS_FILE).is_file():
        K = _read_table(folder / INTRINSICS_FILE, 9).reshape(-1, 3, 3)[:n]
    elif (folder / FOCAL_FILE).is_file():
        f = _read_table(folder / FOCAL_FILE, 1).reshape(-1)[:n]
        K = np.zeros((n, 3, 3))
        K[:, 0, 0] = K[:, 1, 1] = f
        K[:, 0, 2] = [d.shape[1] / 2 for d in depths]
        K[:, 1, 2] = [d.shape[0] / 2 for d in depths]
        K[:, 2, 2] = 1
    else:
        raise Monst3rInputError(f"{folder}: neither {INTRINSICS_FILE} nor {FOCAL_FILE} found")

    def read_conf(regex):
        files = _indexed(folder, regex)
        if len(files) < n:
            return None
        with np.errstate(over="ignore"):
            return [np.exp(_read_npy(p)) for p in list(files.values())[:n]]
    confs = read_conf(r"conf_(\d+)\.npy")
    init_confs = read_conf(r"init_conf_(\d+)\.npy")
    meta = {}
    if (folder / META_FILE).is_file():
        meta = json.loads((folder / META_FILE).read_text())
    missing = []
    if confs is None:
        confs = [np.ones_like(d) for d in depths]
        missing.append("conf")
    if init_confs is None:
        init_confs = [c.copy() for c in confs]
        missing.append("init_conf")
    mask_files = _indexed(folder, r"dynamic_mask_(\d+)\.png")
    if len(mask_files) >= n:
        masks = [_read_mask(p) for p in list(mask_files.values())[:n]]
    else:
        enl = _indexed(folder, r"enlarged_dynamic_mask_(\d+)\.png")
        if len(enl) >= n:
            masks = [_read_mask(p) for p in list(enl.values())[:n]]
        else:
            masks = [np.zeros(d.shape, bool) for d in depths]
            missing.append("dynamic_mask")
    meta = dict(meta)
    meta["loaded_from"] = str(folder)
    meta.setdefault("source", "loaded")
    if missing:
        meta["missing"] = missing
    return Reconstruction(poses=poses, intrinsics=K, depths=depths, confs=confs, init_confs=init_confs,
                          dynamic_masks=masks, rgb=rgb, meta=meta)


# ----------------------------------------------------------------------------------------------------------
# window-wise continuation (optimizer.md 12.3)
# ----------------------------------------------------------------------------------------------------------
def load_prev_video_results(prev_output_dir, num_frames: int, index: int | None = None) -> dict:
    """The last ``num_frames`` frames before ``index`` (default: all ``frame_*.png``) of a result folder.

    Returns {'imgs': view dicts (img ``[1, 3, H, W]`` in [-1, 1], true_shape, idx, instance, mask,
    dynamic_mask), 'depths': ``[n, H, W]`` float32 tensor, 'intrinsics': ``[3, 3]`` tensor (all rows must be
    identical), 'poses': list of float32 7-vectors (x y z qw qx qy qz)}.
    """
    import torch
    folder = Path(prev_output_dir)
    rgb_files = list(_indexed(folder, r"frame_(\d+)\.png").values())
    depth_files = list(_indexed(folder, r"frame_(\d+)\.npy").values())
    end = len(rgb_files) if index is None else int(index)
    start = end - int(num_frames)
    if start < 0 or end > len(rgb_files) or end > len(depth_files):
        raise Monst3rInputError(f"{folder} holds {len(rgb_files)} frames; cannot take {num_frames} frames "
                                f"ending at {end}")
    K_rows = np.loadtxt(folder / INTRINSICS_FILE, ndmin=2, dtype=np.float32)[start:end]
    if not np.allclose(K_rows, K_rows[:1]):
        raise Monst3rInputError(f"{folder}: the previous intrinsics differ between frames; window-wise "
                                "continuation needs one shared camera")
    tum = np.loadtxt(folder / TRAJ_FILE, ndmin=2, dtype=np.float32)[start:end, 1:]
    imgs = []
    for k, p in enumerate(rgb_files[start:end]):
        rgb = _read_rgb(p)
        H, W = rgb.shape[:2]
        imgs.append(dict(img=torch.from_numpy(rgb * 2 - 1).permute(2, 0, 1)[None],
                         true_shape=np.int32([[H, W]]), idx=k, instance=str(p),
                         mask=torch.ones(1, H, W, dtype=torch.bool),
                         dynamic_mask=torch.zeros(1, H, W, dtype=torch.bool)))
    depths = torch.from_numpy(np.stack([np.load(p).astype(np.float32) for p in depth_files[start:end]]))
    return dict(imgs=imgs, depths=depths, intrinsics=torch.from_numpy(K_rows[0].reshape(3, 3)),
                poses=[row.astype(np.float32) for row in tum])


# ----------------------------------------------------------------------------------------------------------
# other exports
# ----------------------------------------------------------------------------------------------------------
def save_realtime_outputs(output: dict, folder) -> Path:
    """The real-time demo's raw files (optimizer.md 10.2) from the inference output of a one-reference graph:
    ``pts3d1_p{b}.npy`` / ``pts3d2_p{b}.npy`` ``[H, W, 6]`` (points in the reference camera + RGB in [0, 1]),
    ``conf1_p{b}.npy`` / ``conf2_p{b}.npy`` and ``img1_p{b}.png`` / ``img2_p{b}.png``."""
    import torch
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)

    def np_(x):
        return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    v1, v2, p1, p2 = (output[k] for k in ("view1", "view2", "pred1", "pred2"))
    for b in range(len(p1["pts3d"])):
        rgb1 = (np_(v1["img"][b]).transpose(1, 2, 0) * 0.5 + 0.5).clip(0, 1)
        rgb2 = (np_(v2["img"][b]).transpose(1, 2, 0) * 0.5 + 0.5).clip(0, 1)
        np.save(folder / f"pts3d1_p{b}.npy", np.concatenate((np_(p1["pts3d"][b]), rgb1), -1).astype(np.float32))
        np.save(folder / f"pts3d2_p{b}.npy",
                np.concatenate((np_(p2["pts3d_in_other_view"][b]), rgb2), -1).astype(np.float32))
        np.save(folder / f"conf1_p{b}.npy", np_(p1["conf"][b]).astype(np.float32))
        np.save(folder / f"conf2_p{b}.npy", np_(p2["conf"][b]).astype(np.float32))
        cv2.imwrite(str(folder / f"img1_p{b}.png"), _to_uint8(rgb1)[..., ::-1])
        cv2.imwrite(str(folder / f"img2_p{b}.png"), _to_uint8(rgb2)[..., ::-1])
    return folder


def export_ply_frames(result: Reconstruction, folder, min_conf_thr: float = 1.1, use_init_conf: bool = True
                      ) -> list[Path]:
    """One coloured world-space point cloud per frame: ``<folder>/frame_%04d.ply`` (points with confidence
    above ``min_conf_thr``)."""
    import trimesh
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    masks = result.masks(min_conf_thr, use_init_conf)
    out = []
    for k in range(result.n_frames):
        m = np.asarray(masks[k])
        pts = result.pts3d(k)[m]
        cols = _to_uint8(np.asarray(result.rgb[k])[m])
        path = folder / f"frame_{k:04d}.ply"
        trimesh.PointCloud(pts.reshape(-1, 3), colors=cols.reshape(-1, 3)).export(str(path))
        out.append(path)
    return out


def export_colmap(result: Reconstruction, folder, min_conf_thr: float = 1.1, use_init_conf: bool = True,
                  max_points_per_frame: int = 20000, image_names: Sequence[str] | None = None,
                  seed: int = 0) -> Path:
    """COLMAP text model (``cameras.txt``, ``images.txt``, ``points3D.txt``) of the result.

    One PINHOLE camera per frame (COLMAP puts pixel centres at +0.5, so cx, cy are shifted by 0.5); image poses
    are world-to-camera quaternion + translation; 3-D points are confident depth pixels (at most
    ``max_points_per_frame`` per frame, random subset), each observed by its own frame only.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    masks = result.masks(min_conf_thr, use_init_conf)
    names = list(image_names) if image_names is not None else [RGB_PATTERN.format(k) for k in range(result.n_frames)]
    cam_lines, img_lines, pt_lines = [], [], []
    pid = 1
    from scipy.spatial.transform import Rotation
    for k in range(result.n_frames):
        H, W = result.frame_shape(k)
        K = result.intrinsics[k]
        cam_lines.append(f"{k + 1} PINHOLE {W} {H} {K[0, 0]:.6f} {K[1, 1]:.6f} {K[0, 2] + 0.5:.6f} {K[1, 2] + 0.5:.6f}")
        w2c = np.linalg.inv(result.poses[k].astype(np.float64))
        qx, qy, qz, qw = Rotation.from_matrix(w2c[:3, :3]).as_quat()
        t = w2c[:3, 3]
        m = np.asarray(masks[k])
        vs, us = np.nonzero(m)
        if len(us) > max_points_per_frame:
            sel = rng.choice(len(us), max_points_per_frame, replace=False)
            us, vs = us[sel], vs[sel]
        pts = result.pts3d(k)[vs, us]
        cols = _to_uint8(np.asarray(result.rgb[k])[vs, us])
        obs = []
        for n, (u, v, p, c) in enumerate(zip(us, vs, pts, cols)):
            obs.append(f"{u + 0.5:.2f} {v + 0.5:.2f} {pid}")
            pt_lines.append(f"{pid} {p[0]:.6f} {p[1]:.6f} {p[2]:.6f} {c[0]} {c[1]} {c[2]} 0 {k + 1} {n}")
            pid += 1
        img_lines.append(f"{k + 1} {qw:.9f} {qx:.9f} {qy:.9f} {qz:.9f} {t[0]:.9f} {t[1]:.9f} {t[2]:.9f} {k + 1} {names[k]}")
        img_lines.append(" ".join(obs))
    (folder / "cameras.txt").write_text(
        "# Camera list with one line of data per camera:\n#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]\n"
        f"# Number of cameras: {len(cam_lines)}\n" + "\n".join(cam_lines) + "\n")
    (folder / "images.txt").write_text(
        "# Image list with two lines of data per image:\n#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME\n"
        "#   POINTS2D[] as (X, Y, POINT3D_ID)\n"
        f"# Number of images: {result.n_frames}\n" + "\n".join(img_lines) + "\n")
    (folder / "points3D.txt").write_text(
        "# 3D point list with one line of data per point:\n"
        "#   POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[] as (IMAGE_ID, POINT2D_IDX)\n"
        f"# Number of points: {len(pt_lines)}\n" + "\n".join(pt_lines) + ("\n" if pt_lines else ""))
    return folder
