"""Evaluation data sets in the original on-disk layouts, made from synthetic scenes, and an ideal network.

Test-only (moved out of the library, issue #15): the whole evaluation pipeline runs on them exactly as on the real
data, and with :class:`IdealPairModel` the network is perfect, so what is measured is the pipeline itself.

* :func:`write_sintel_fixture`: ``data/sintel/training/{final,camdata_left,depth,dynamic_label_perfect}/<seq>/``
  (``frame_%04d`` numbered from 1; ``.cam`` = K and world-to-camera; ``.dpt`` depth; 0/255 masks);
* :func:`write_tum_fixture`: ``data/tum/<seq>/rgb_90/<timestamp>.png`` + ``groundtruth_90.txt`` (TUM, w-last);
  ``static_gt=True`` writes a GT whose positions are all identical (a camera on a tripod: Sim(3) alignment is
  impossible, the sequence must be reported as degenerate);
* :func:`write_bonn_fixture`: ``data/bonn/rgbd_bonn_dataset/rgbd_bonn_<seq>/{rgb_110,depth_110}`` +
  ``groundtruth_110.txt`` (depth PNG x 5000).

Each writer returns ``{absolute frame path: (scene, frame index)}``; merge them and give the result to
:class:`IdealPairModel`.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Optional, Union

import numpy as np
import torch
from torch import nn

from monst3r.datasets.synthetic import SceneConfig, SyntheticScene
from monst3r.eval.depth_io import write_dpt, write_png_depth
from monst3r.eval.trajectory import write_sintel_cam, write_tum

PathLike = Union[str, os.PathLike]
FrameIndex = dict[str, tuple[SyntheticScene, int]]

__all__ = ["IdealPairModel", "IdealFlowModel", "write_sintel_fixture", "write_tum_fixture", "write_bonn_fixture",
           "TUM_T0"]

TUM_T0 = 1341846313.553992  # first timestamp of the TUM-like fixtures (seconds)


def _key(path: PathLike) -> str:
    return os.path.realpath(os.fspath(path))


def _save_png(path: Path, array: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(array).save(path)


class IdealPairModel(nn.Module):
    """A "network" returning the exact pairwise pointmaps of synthetic frames (``SyntheticScene.ideal_pair``).

    Call it like the real model: ``pred1, pred2 = model(view1, view2)`` with batched view dicts whose
    ``instance`` entries are the frame paths (what ``load_images`` sets). Returns ``pred1 = {'pts3d' [B,H,W,3],
    'conf' [B,H,W]}`` and ``pred2 = {'pts3d_in_other_view' [B,H,W,3], 'conf' [B,H,W]}`` (float32, on the views'
    device). The frames must be loaded at the scene's resolution (``--eval_image_size`` = the long side, no crop
    change), which the fixture writers guarantee for sizes that are multiples of 16.

    Args:
        frames: ``{path: (scene, index)}`` from the fixture writers.
        noise_std, conf, scale: passed to :meth:`SyntheticScene.ideal_pair`.
    """

    def __init__(self, frames: Mapping[str, tuple[SyntheticScene, int]], noise_std: float = 0.0, conf: float = 5.0,
                 scale: Optional[float] = 1.0):
        super().__init__()
        self.frames = {_key(k): v for k, v in frames.items()}
        self.noise_std, self.conf, self.scale = noise_std, conf, scale
        self.register_buffer("_anchor", torch.zeros(()), persistent=False)  # gives the module a device
        self.calls = 0

    def _lookup(self, instance: str) -> tuple[SyntheticScene, int]:
        try:
            return self.frames[_key(instance)]
        except KeyError:
            raise KeyError(f"IdealPairModel: unknown frame {instance}") from None

    def forward(self, view1: dict, view2: dict) -> tuple[dict, dict]:
        self.calls += 1
        out: dict[str, list[np.ndarray]] = {"pts3d": [], "conf1": [], "pts3d_in_other_view": [], "conf2": []}
        for a, b, img in zip(view1["instance"], view2["instance"], view1["img"]):
            (scene_a, i), (scene_b, j) = self._lookup(a), self._lookup(b)
            if scene_a is not scene_b:
                raise ValueError(f"IdealPairModel: {a} and {b} belong to different scenes")
            if tuple(img.shape[-2:]) != (scene_a.height, scene_a.width):
                raise ValueError(f"IdealPairModel: frame {a} was loaded at {tuple(img.shape[-2:])}, the scene is "
                                 f"{scene_a.height}x{scene_a.width}; load it at its own resolution")
            pair = scene_a.ideal_pair(i, j, noise_std=self.noise_std, conf=self.conf, scale=self.scale)
            for key in out:
                out[key].append(pair[key])
        dev = view1["img"].device

        def stack(key: str) -> torch.Tensor:
            return torch.from_numpy(np.stack(out[key])).to(dev)

        return ({"pts3d": stack("pts3d"), "conf": stack("conf1")},
                {"pts3d_in_other_view": stack("pts3d_in_other_view"), "conf": stack("conf2")})


def _pixels_key(rgb: np.ndarray) -> bytes:
    import hashlib

    return hashlib.sha1(np.ascontiguousarray(rgb, dtype=np.uint8).tobytes()).digest()


class IdealFlowModel(nn.Module):
    """An optical-flow "network" returning the generator's exact flow (``SyntheticScene.flow``), called like RAFT:
    ``flow_model(img1, img2, iters=20, test_mode=True)[1]`` with ``img [B, 3, H, W]`` RGB in 0..255 ->
    ``[B, 2, H, W]``. Frames are recognised by their pixels (the rounded 8-bit image).

    Args:
        frames: ``{path: (scene, index)}`` from the fixture writers (only the scenes and indices are used).
    """

    def __init__(self, frames: Mapping[str, tuple[SyntheticScene, int]]):
        super().__init__()
        self.lookup = {_pixels_key(scene.frame(k).rgb): (scene, k) for scene, k in frames.values()}
        self.register_buffer("_anchor", torch.zeros(()), persistent=False)
        self.calls = 0

    def _frame(self, img: torch.Tensor) -> tuple[SyntheticScene, int]:
        rgb = img.detach().round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).cpu().numpy()
        try:
            return self.lookup[_pixels_key(rgb)]
        except KeyError:
            raise KeyError("IdealFlowModel: an image that is not a frame of the fixture") from None

    def forward(self, img1: torch.Tensor, img2: torch.Tensor, iters: int = 20, test_mode: bool = True):
        self.calls += 1
        flows = []
        for a, b in zip(img1, img2):
            (scene, i), (scene_b, j) = self._frame(a), self._frame(b)
            if scene is not scene_b:
                raise ValueError("IdealFlowModel: the two images belong to different scenes")
            flows.append(torch.from_numpy(scene.flow(i, j)[0]).permute(2, 0, 1))
        return None, torch.stack(flows).to(img1.device)


def write_frames(out: Path, num_frames: int, seed: int = 1, width: int = 128, height: int = 96) -> Path:
    """The RGB frames of a synthetic scene as ``out/00000.png ...`` (demo input); returns ``out``."""
    import PIL.Image

    scene = SyntheticScene(SceneConfig(width=width, height=height, num_frames=num_frames, seed=seed))
    for i, f in enumerate(scene.frames()):
        PIL.Image.fromarray(f.rgb).save(out / f"{i:05d}.png")
    return out


def _scene(config: Union[SceneConfig, dict]) -> SyntheticScene:
    return SyntheticScene(config if isinstance(config, SceneConfig) else SceneConfig(**config))


def write_sintel_fixture(root: PathLike, sequences: Mapping[str, Union[SceneConfig, dict]], depth: bool = True,
                         masks: bool = True) -> FrameIndex:
    """Sintel layout under ``<root>/data/sintel/training`` (see module docstring); returns the frame index."""
    base = Path(root) / "data" / "sintel" / "training"
    index: FrameIndex = {}
    for seq, config in sequences.items():
        scene = _scene(config)
        dirs = {name: base / name / seq for name in ("final", "camdata_left", "depth", "dynamic_label_perfect")}
        for name, d in dirs.items():
            if name == "final" or name == "camdata_left" or (name == "depth" and depth) or \
                    (name == "dynamic_label_perfect" and masks):
                d.mkdir(parents=True, exist_ok=True)
        for k in range(scene.num_frames):
            f = scene.frame(k)
            stem = f"frame_{k + 1:04d}"
            path = dirs["final"] / f"{stem}.png"
            _save_png(path, f.rgb)
            write_sintel_cam(dirs["camdata_left"] / f"{stem}.cam", f.intrinsics, np.linalg.inv(f.pose)[:3])
            if depth:
                write_dpt(dirs["depth"] / f"{stem}.dpt", f.depth)
            if masks:
                _save_png(dirs["dynamic_label_perfect"] / f"{stem}.png", f.dynamic_mask.astype(np.uint8) * 255)
            index[_key(path)] = (scene, k)
    return index


def write_tum_fixture(root: PathLike, sequences: Mapping[str, Union[SceneConfig, dict]],
                      static_gt: tuple[str, ...] = (), dt: float = 0.1) -> FrameIndex:
    """TUM-dynamics layout under ``<root>/data/tum/<seq>/`` (prepared form: ``rgb_90`` + ``groundtruth_90.txt``).

    Frames are named by their timestamp (``%.6f.png``, ``TUM_T0 + k * dt``). Sequences in ``static_gt`` get a GT
    whose positions all equal the first camera's (degenerate for Sim(3) alignment).
    """
    index: FrameIndex = {}
    for seq, config in sequences.items():
        scene = _scene(config)
        folder = Path(root) / "data" / "tum" / seq
        (folder / "rgb_90").mkdir(parents=True, exist_ok=True)
        stamps = TUM_T0 + dt * np.arange(scene.num_frames)
        for k, stamp in enumerate(stamps):
            path = folder / "rgb_90" / f"{stamp:.6f}.png"
            _save_png(path, scene.frame(k).rgb)
            index[_key(path)] = (scene, k)
        poses = scene.poses.copy()
        if seq in static_gt:
            poses[:, :3, 3] = poses[0, :3, 3]
        write_tum(folder / "groundtruth_90.txt", poses, stamps)
    return index


def write_bonn_fixture(root: PathLike, sequences: Mapping[str, Union[SceneConfig, dict]], dt: float = 0.033
                       ) -> FrameIndex:
    """Bonn layout (prepared form) under ``<root>/data/bonn/rgbd_bonn_dataset/rgbd_bonn_<seq>/``."""
    index: FrameIndex = {}
    for seq, config in sequences.items():
        scene = _scene(config)
        folder = Path(root) / "data" / "bonn" / "rgbd_bonn_dataset" / f"rgbd_bonn_{seq}"
        for sub in ("rgb_110", "depth_110"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        stamps = 1548266469.0 + dt * np.arange(scene.num_frames)
        for k, stamp in enumerate(stamps):
            f = scene.frame(k)
            path = folder / "rgb_110" / f"{stamp:.6f}.png"
            _save_png(path, f.rgb)
            write_png_depth(folder / "depth_110" / f"{stamp:.6f}.png", f.depth, 5000.0)
            index[_key(path)] = (scene, k)
        write_tum(folder / "groundtruth_110.txt", scene.poses, stamps)
    return index
