#!/usr/bin/env python3
"""Waymo Open -> the layout ``monst3r.datasets.waymo.Waymo`` reads (spec training.md 7.7).

``preprocess``: for every ``*.tfrecord`` segment, every frame and camera 1..5: the JPEG rescaled so that its long
side is 512 (LANCZOS), the LiDAR points of all five sensors projected into that camera as a sparse depth map
(camera z, 0 = no point; the nearest point wins), and ``intrinsics`` (3x3, pixel centres at integers, rescaled),
``cam2world`` (4x4, OpenCV axes: x right, y down, z forward) and ``distortion`` (k1 k2 p1 p2 k3). Output:
``<out>/<segment>.tfrecord/<frame %05d>_<camera>.{jpg,exr,npz}``. Needs ``tensorflow`` and
``waymo-open-dataset-tf-2-12-0`` (``pip install --no-deps``) and an OpenCV with EXR support or ``openexr``.

``make-pairs``: ``<out>/<name>`` with ``scenes`` (segment folders in sorted order), ``frames`` (all frame names)
and ``pairs`` (``scene, frame id 1, frame id 2``): for every scene, camera 1..5, stride 1..9 and start i (step 1),
the pair (i, i + stride) of that camera's sorted frames. Pure NumPy.
"""
from __future__ import annotations

import argparse
import glob
import os
import sys
from typing import Dict, List

import numpy as np

# Waymo camera frame (x forward, y left, z up) -> OpenCV camera frame (x right, y down, z forward)
OPENCV_TO_WAYMO_CAM = np.array([[0, 0, 1, 0], [-1, 0, 0, 0], [0, -1, 0, 0], [0, 0, 0, 1]], dtype=np.float64)
LONG_SIDE = 512



class _OneLineParser(argparse.ArgumentParser):
    """Usage errors as one ``error: ...`` line (exit status 2), as every entry point of the project."""

    def error(self, message):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")

def make_pairs(output_dir: str, name: str = "waymo_pairs_video.npz", strides=range(1, 10), cameras=range(1, 6)
               ) -> str:
    """Build the pair list of every processed scene folder (see module docstring); returns its path."""
    scenes = sorted(os.path.basename(os.path.normpath(p)) for p in glob.glob(os.path.join(output_dir, "*", ""))
                    if glob.glob(os.path.join(p, "*.npz")))
    frames: List[str] = []
    frame_id: Dict[str, int] = {}
    pairs = []
    for si, scene in enumerate(scenes):
        names = sorted(os.path.basename(p)[:-4] for p in glob.glob(os.path.join(output_dir, scene, "*.jpg")))
        for cam in cameras:
            cam_frames = [n for n in names if n.endswith(f"_{cam}")]
            for n in cam_frames:
                if n not in frame_id:
                    frame_id[n] = len(frames)
                    frames.append(n)
            for stride in strides:
                for i in range(len(cam_frames) - stride):
                    pairs.append((si, frame_id[cam_frames[i]], frame_id[cam_frames[i + stride]]))
    path = os.path.join(output_dir, name)
    np.savez(path, scenes=np.array(scenes), frames=np.array(frames),
             pairs=np.array(pairs, dtype=np.int64).reshape(-1, 3))
    print(f"{len(pairs)} pairs of {len(scenes)} scenes -> {path}")
    return path


def _write_exr(path: str, depth: np.ndarray) -> None:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from monst3r.datasets.waymo import write_exr_depth

    write_exr_depth(path, depth)


def preprocess_segment(tfrecord: str, out_root: str) -> None:
    import tensorflow as tf  # noqa: F401  (needed by the waymo package)
    from PIL import Image
    from waymo_open_dataset import dataset_pb2
    from waymo_open_dataset.utils import frame_utils

    out = os.path.join(out_root, os.path.basename(tfrecord))
    os.makedirs(out, exist_ok=True)
    for fi, data in enumerate(tf.data.TFRecordDataset(tfrecord, compression_type="")):
        frame = dataset_pb2.Frame()
        frame.ParseFromString(bytearray(data.numpy()))
        ranges, cam_proj, _, poses = frame_utils.parse_range_image_and_camera_projection(frame)
        points, cp_points = frame_utils.convert_range_image_to_point_cloud(frame, ranges, cam_proj, poses)
        points = np.concatenate(points, axis=0)          # [N,3] vehicle frame
        cp_points = np.concatenate(cp_points, axis=0)    # [N,6] (cam, x, y) x 2
        vehicle_to_world = np.array(frame.pose.transform, dtype=np.float64).reshape(4, 4)
        calibs = {c.name: c for c in frame.context.camera_calibrations}
        for image in frame.images:
            cam = int(image.name)
            calib = calibs[image.name]
            f_u, f_v, c_u, c_v, k1, k2, p1, p2, k3 = list(calib.intrinsic)
            cam_to_vehicle = np.array(calib.extrinsic.transform, dtype=np.float64).reshape(4, 4)
            c2w = vehicle_to_world @ cam_to_vehicle @ OPENCV_TO_WAYMO_CAM
            img = Image.open(__import__("io").BytesIO(image.image)).convert("RGB")
            W, H = img.size
            depth = np.zeros((H, W), np.float32)
            w2c_vehicle = np.linalg.inv(cam_to_vehicle @ OPENCV_TO_WAYMO_CAM)
            for slot in (0, 3):
                sel = cp_points[:, slot] == cam
                if not sel.any():
                    continue
                uv = np.round(cp_points[sel, slot + 1: slot + 3]).astype(int)
                z = (points[sel] @ w2c_vehicle[:3, :3].T + w2c_vehicle[:3, 3])[:, 2]
                ok = (z > 0) & (uv[:, 0] >= 0) & (uv[:, 0] < W) & (uv[:, 1] >= 0) & (uv[:, 1] < H)
                for (u, v), d in zip(uv[ok], z[ok]):
                    if depth[v, u] == 0 or d < depth[v, u]:
                        depth[v, u] = d
            s = LONG_SIDE / max(W, H)
            size = (round(W * s), round(H * s))
            sx, sy = size[0] / W, size[1] / H
            K = np.array([[f_u * sx, 0, (c_u + 0.5) * sx - 0.5], [0, f_v * sy, (c_v + 0.5) * sy - 0.5], [0, 0, 1]])
            ys, xs = np.nonzero(depth)
            small = np.zeros((size[1], size[0]), np.float32)
            small[np.minimum((ys * sy).astype(int), size[1] - 1), np.minimum((xs * sx).astype(int), size[0] - 1)] = \
                depth[ys, xs]
            name = f"{fi:05d}_{cam}"
            img.resize(size, Image.LANCZOS).save(os.path.join(out, name + ".jpg"), quality=95)
            _write_exr(os.path.join(out, name + ".exr"), small)
            np.savez(os.path.join(out, name + ".npz"), intrinsics=K, cam2world=c2w,
                     distortion=np.array([k1, k2, p1, p2, k3]))
    print(f"done: {tfrecord}")


def main(argv=None) -> int:
    p = _OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("preprocess")
    a.add_argument("--waymo_dir", required=True)
    a.add_argument("--output_dir", required=True)
    b = sub.add_parser("make-pairs")
    b.add_argument("--output_dir", required=True)
    b.add_argument("--name", default="waymo_pairs_video.npz")
    args = p.parse_args(argv)
    if args.cmd == "make-pairs":
        if not os.path.isdir(args.output_dir):
            print(f"error: {args.output_dir} is not a folder: run `preprocess` first and give its --output_dir",
                  file=sys.stderr)
            return 2
        try:
            make_pairs(args.output_dir, args.name)
        except OSError as exc:
            print(f"error: cannot write {os.path.join(args.output_dir, args.name)}: {exc.strerror or exc}",
                  file=sys.stderr)
            return 2
        return 0
    try:
        import waymo_open_dataset  # noqa: F401  (availability check)
    except ImportError:
        print("error: preprocessing needs tensorflow and waymo-open-dataset-tf-2-12-0", file=sys.stderr)
        return 2
    records = sorted(glob.glob(os.path.join(args.waymo_dir, "*.tfrecord")))
    if not records:
        print(f"error: no *.tfrecord in {args.waymo_dir}", file=sys.stderr)
        return 2
    for r in records:
        preprocess_segment(r, args.output_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
